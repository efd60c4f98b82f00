output "spark_service_account" {
  description = "Service account of the Spark driver and executor pods in the stockml namespace."
  value       = local.service_account
  depends_on  = [helm_release.spark_operator]
}
