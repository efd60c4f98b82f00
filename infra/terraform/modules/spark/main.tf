# The Spark path: the Kubeflow Spark operator, which runs SparkApplication objects in the stockml
# namespace. Off by default (root variable spark_enabled; the module is instantiated with count).

locals {
  service_account = "spark"
  values_vars = {
    job_namespace   = var.namespace
    service_account = local.service_account
  }
}

resource "helm_release" "spark_operator" {
  name             = "spark-operator"
  repository       = "https://kubeflow.github.io/spark-operator"
  chart            = "spark-operator"
  version          = var.chart_version
  namespace        = "spark-operator"
  create_namespace = true
  atomic           = true

  values = [templatefile("${path.module}/values.yaml.tpl", local.values_vars)]
}
