variable "name_prefix" {
  type        = string
  description = "Prefix of every resource's name."
}

variable "eks_cluster_name" {
  type        = string
  description = "Name of the existing EKS cluster (its endpoint, CA and OIDC issuer are read)."
}

variable "vpc_id" {
  type        = string
  description = "VPC the database and Redis security groups are created in."
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets of the database and Redis subnet groups."
}

variable "cluster_cidr_blocks" {
  type        = list(string)
  description = "CIDR blocks allowed to reach Postgres (5432) and Redis (6379)."
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of the MLflow service account that may use the artifact bucket."
}

variable "mlflow_service_account" {
  type        = string
  description = "Name of the MLflow server's Kubernetes service account (IRSA subject)."
}

variable "db_instance_class" {
  type        = string
  description = "RDS instance class of each metadata database."
}

variable "db_allocated_storage_gb" {
  type        = number
  description = "Allocated storage of each metadata database in GiB (autoscaling up to 4 times that)."
}

variable "db_engine_version" {
  type        = string
  description = "PostgreSQL major version."
}

variable "db_backup_retention_days" {
  type        = number
  description = "Days of automated backups."
}

variable "redis_node_type" {
  type        = string
  description = "ElastiCache node type."
}

variable "redis_engine_version" {
  type        = string
  description = "Redis engine version."
}
