output "ui_url" {
  description = "In-cluster URL of the Evidently UI."
  value       = "http://${kubernetes_manifest.service.manifest.metadata.name}.${var.namespace}.svc.cluster.local:${local.port}"
}
