output "url" {
  description = "In-cluster URL of the forecast service."
  value       = "http://${kubernetes_manifest.service.manifest.metadata.name}.${var.namespace}.svc.cluster.local:${local.port}"
}
