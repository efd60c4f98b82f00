variable "namespace" {
  type        = string
  description = "Namespace of the MLflow server."
}

variable "image" {
  type        = string
  description = "MLflow server image (repository:tag) with mlflow, psycopg2 and the object store's client."
}

variable "service_account" {
  type        = string
  description = "Name of the server's service account (the cloud module grants it the artifact bucket)."
}

variable "service_account_annotations" {
  type        = map(string)
  description = "Annotations of the service account (e.g. eks.amazonaws.com/role-arn for IRSA)."
}

variable "backend_store_uri" {
  type        = string
  sensitive   = true
  description = "SQLAlchemy URL of the backend store (managed Postgres)."
}

variable "artifacts_destination" {
  type        = string
  description = "Object-store URI the server stores artifacts in (it proxies them: clients need no bucket access)."
}

variable "replicas" {
  type        = number
  description = "Server pods."
}
