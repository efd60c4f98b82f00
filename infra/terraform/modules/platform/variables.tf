variable "namespace" {
  type        = string
  description = "Namespace created for every stockml component."
}

variable "shared_storage_class" {
  type        = string
  description = "ReadWriteMany storage class of the shared STOCKML_HOME volume."
}

variable "shared_storage_size_gb" {
  type        = number
  description = "Size of the shared STOCKML_HOME volume in GiB."
}

variable "source_db_connection" {
  type        = string
  sensitive   = true
  description = "The company's source database as an Airflow connection (URI or JSON)."
}
