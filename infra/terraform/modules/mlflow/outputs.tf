output "tracking_uri" {
  description = "In-cluster URL of the tracking server and registry."
  value       = "http://${kubernetes_manifest.service.manifest.metadata.name}.${var.namespace}.svc.cluster.local:${local.port}"
}
