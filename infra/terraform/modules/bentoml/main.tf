# The forecast service (serving/bentos, `bentoml containerize`): a Deployment, its Service and a
# HorizontalPodAutoscaler on CPU, from the YAML manifests in manifests/. The model is not in the image:
# the service loads models:/stockml-router@champion from MLflow and follows alias moves.

locals {
  name = "stockml-forecaster"
  port = 3000
  # millicores of the request, doubled for the limit
  cpu_request_m = can(regex("m$", var.cpu_request)) ? tonumber(trimsuffix(var.cpu_request, "m")) : tonumber(var.cpu_request) * 1000
  manifest_vars = {
    name                = local.name
    namespace           = var.namespace
    image               = var.image
    port                = local.port
    mlflow_tracking_uri = var.mlflow_tracking_uri
    secret_name         = kubernetes_secret.serving.metadata[0].name
    min_replicas        = var.min_replicas
    max_replicas        = max(var.min_replicas, var.max_replicas)
    target_cpu_pct      = var.target_cpu_utilization_pct
    cpu_request         = "${local.cpu_request_m}m"
    cpu_limit           = "${local.cpu_request_m * 2}m"
    memory              = var.memory_limit
  }
}

# An admin API key for the service, generated here (read it with kubectl; add user keys to the file).
resource "random_password" "admin_key" {
  length  = 40
  special = false
}

resource "kubernetes_secret" "serving" {
  metadata {
    name      = "stockml-serving"
    namespace = var.namespace
  }

  data = {
    api_keys  = "${random_password.admin_key.result}:admin\n"
    redis_url = var.redis_url
  }
}

resource "kubernetes_manifest" "deployment" {
  manifest = yamldecode(templatefile("${path.module}/manifests/deployment.yaml.tpl", local.manifest_vars))
}

resource "kubernetes_manifest" "service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/service.yaml.tpl", local.manifest_vars))
}

resource "kubernetes_manifest" "hpa" {
  manifest   = yamldecode(templatefile("${path.module}/manifests/hpa.yaml.tpl", local.manifest_vars))
  depends_on = [kubernetes_manifest.deployment]
}
