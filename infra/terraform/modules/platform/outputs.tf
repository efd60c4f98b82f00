output "namespace" {
  description = "The namespace every component is deployed in."
  value       = kubernetes_namespace.this.metadata[0].name
}

output "shared_state_claim" {
  description = "Name of the ReadWriteMany claim mounted as STOCKML_HOME."
  value       = kubernetes_manifest.shared_state.manifest.metadata.name
}

output "source_secret_name" {
  description = "Secret whose key `connection` holds the source database's Airflow connection."
  value       = kubernetes_secret.source.metadata[0].name
}
