# The contract every cloud module fulfils (another cloud: a module with the same outputs).

output "cluster_endpoint" {
  description = "API server URL of the Kubernetes cluster."
  value       = data.aws_eks_cluster.this.endpoint
}

output "cluster_ca_certificate" {
  description = "Base64 CA certificate of the cluster's API server."
  value       = data.aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_token" {
  description = "Short-lived token for the Kubernetes and Helm providers."
  value       = data.aws_eks_cluster_auth.this.token
  sensitive   = true
}

output "airflow_db_connection" {
  description = "URL of Airflow's metadata database (TLS required). Plain postgresql:// (psycopg2): KEDA's Postgres scaler reads the same secret and takes no SQLAlchemy driver suffix."
  value       = "postgresql://airflow:${random_password.db["airflow"].result}@${aws_db_instance.metadata["airflow"].endpoint}/airflow?sslmode=require"
  sensitive   = true
}

output "mlflow_db_connection" {
  description = "SQLAlchemy URL of MLflow's backend store (TLS required)."
  value       = "postgresql://mlflow:${random_password.db["mlflow"].result}@${aws_db_instance.metadata["mlflow"].endpoint}/mlflow?sslmode=require"
  sensitive   = true
}

output "airflow_db_endpoint" {
  description = "host:port of Airflow's metadata database."
  value       = aws_db_instance.metadata["airflow"].endpoint
}

output "mlflow_db_endpoint" {
  description = "host:port of MLflow's backend store."
  value       = aws_db_instance.metadata["mlflow"].endpoint
}

output "redis_url" {
  description = "Redis URL with the auth token, TLS (rediss://), database 0."
  value       = "rediss://:${random_password.redis.result}@${aws_elasticache_replication_group.this.primary_endpoint_address}:6379/0?ssl_cert_reqs=required"
  sensitive   = true
}

output "redis_endpoint" {
  description = "host:port of the Redis primary."
  value       = "${aws_elasticache_replication_group.this.primary_endpoint_address}:6379"
}

output "artifact_root" {
  description = "Where the MLflow server stores artifacts."
  value       = "s3://${aws_s3_bucket.artifacts.bucket}/mlflow"
}

output "mlflow_service_account_annotations" {
  description = "Annotations of the MLflow service account that grant it the bucket (IRSA)."
  value       = { "eks.amazonaws.com/role-arn" = aws_iam_role.mlflow.arn }
}

output "secret_arns" {
  description = "Secrets Manager ARNs of the generated credentials."
  value = {
    airflow_db = aws_secretsmanager_secret.db["airflow"].arn
    mlflow_db  = aws_secretsmanager_secret.db["mlflow"].arn
    redis      = aws_secretsmanager_secret.redis.arn
  }
}
