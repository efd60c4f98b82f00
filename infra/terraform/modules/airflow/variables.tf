variable "namespace" {
  type        = string
  description = "Namespace of the Airflow release."
}

variable "chart_version" {
  type        = string
  description = "Version of the official apache-airflow/airflow chart."
}

variable "image_repository" {
  type        = string
  description = "Repository of the Airflow image with stockml installed."
}

variable "image_tag" {
  type        = string
  description = "Tag of the Airflow image."
}

variable "metadata_connection" {
  type        = string
  sensitive   = true
  description = "SQLAlchemy URL of the metadata database."
}

variable "broker_url" {
  type        = string
  sensitive   = true
  description = "Celery broker URL (Redis, with its auth token)."
}

variable "source_secret_name" {
  type        = string
  description = "Secret whose key `connection` is the source database's Airflow connection (AIRFLOW_CONN_STOCKML_SOURCE)."
}

variable "mlflow_tracking_uri" {
  type        = string
  description = "MLflow server the pipeline registers models in (STOCKML_MLFLOW_TRACKING_URI)."
}

variable "shared_state_claim" {
  type        = string
  description = "ReadWriteMany claim mounted on every worker as STOCKML_HOME."
}

variable "dags_git_repo" {
  type        = string
  description = "Repository git-sync pulls (dags/ and plugins/ of this repository)."
}

variable "dags_git_branch" {
  type        = string
  description = "Branch git-sync follows."
}

variable "celery_queues" {
  type        = list(string)
  description = "Queues every worker consumes."
}

variable "worker_concurrency" {
  type        = number
  description = "Task slots per worker pod."
}

variable "worker_min_replicas" {
  type        = number
  description = "Fewest worker pods KEDA keeps."
}

variable "worker_max_replicas" {
  type        = number
  description = "Most worker pods KEDA scales out to (raised to worker_min_replicas if lower)."
}

variable "keda_install" {
  type        = bool
  description = "Install the KEDA chart (false: the cluster already runs KEDA)."
}

variable "keda_chart_version" {
  type        = string
  description = "Version of the kedacore/keda chart."
}
