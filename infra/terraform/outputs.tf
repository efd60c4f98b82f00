# Every endpoint. The services are ClusterIP (in-cluster DNS names); reach them from a laptop with
# `kubectl -n <namespace> port-forward svc/<name> <port>` or put an Ingress in front (README).

output "airflow_ui_url" {
  description = "Airflow UI and REST API (the api-server)."
  value       = module.airflow.ui_url
}

output "mlflow_tracking_uri" {
  description = "MLflow tracking server and registry (STOCKML_MLFLOW_TRACKING_URI for every component)."
  value       = module.mlflow.tracking_uri
}

output "bentoml_url" {
  description = "The forecast service (Swagger UI at /, /readyz, /metrics)."
  value       = module.bentoml.url
}

output "evidently_ui_url" {
  description = "The Evidently UI (the ops dashboards of the project stockml)."
  value       = module.evidently.ui_url
}

output "airflow_db_endpoint" {
  description = "host:port of Airflow's metadata database (managed Postgres)."
  value       = module.cloud.airflow_db_endpoint
}

output "mlflow_db_endpoint" {
  description = "host:port of MLflow's backend store (managed Postgres)."
  value       = module.cloud.mlflow_db_endpoint
}

output "redis_endpoint" {
  description = "host:port of the Redis (Celery broker, the service's shared cache and rate limits; TLS)."
  value       = module.cloud.redis_endpoint
}

output "artifact_root" {
  description = "Object-store location of the MLflow artifacts."
  value       = module.cloud.artifact_root
}

output "secret_arns" {
  description = "Secrets Manager ARNs of the generated database and Redis credentials."
  value       = module.cloud.secret_arns
}

output "spark_operator_service_account" {
  description = "Service account SparkApplications run as (null while spark_enabled is false)."
  value       = var.spark_enabled ? module.spark[0].spark_service_account : null
}
