variable "namespace" {
  type        = string
  description = "Namespace whose SparkApplications the operator runs (the stockml namespace)."
}

variable "chart_version" {
  type        = string
  description = "Version of the kubeflow spark-operator chart."
}
