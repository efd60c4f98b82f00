output "ui_url" {
  description = "In-cluster URL of the Airflow UI and REST API (the chart's api-server service)."
  value       = "http://${helm_release.airflow.name}-api-server.${var.namespace}.svc.cluster.local:8080"
}
