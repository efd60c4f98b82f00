variable "namespace" {
  type        = string
  description = "Namespace of the forecast service."
}

variable "image" {
  type        = string
  description = "The containerized bento stockml-forecaster (repository:tag)."
}

variable "mlflow_tracking_uri" {
  type        = string
  description = "MLflow registry the service loads models:/stockml-router@champion from."
}

variable "redis_url" {
  type        = string
  sensitive   = true
  description = "Redis URL (with its auth token) of the shared forecast cache and per-key rate limits."
}

variable "min_replicas" {
  type        = number
  description = "Fewest pods the horizontal autoscaler keeps."
}

variable "max_replicas" {
  type        = number
  description = "Most pods the horizontal autoscaler scales out to (raised to min_replicas if lower)."
}

variable "target_cpu_utilization_pct" {
  type        = number
  description = "Average CPU utilisation (per cent of the request) the autoscaler aims at."
}

variable "cpu_request" {
  type        = string
  description = "CPU request of one pod (the limit is twice it)."
}

variable "memory_limit" {
  type        = string
  description = "Memory request and limit of one pod."
}
