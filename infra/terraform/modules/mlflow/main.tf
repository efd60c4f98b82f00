# The MLflow tracking server and registry: backend store on the managed Postgres, artifacts proxied
# to the object store (--serve-artifacts, so Airflow workers and the service need no bucket access).
# Its objects are YAML manifests in manifests/, rendered with templatefile and applied as they are.

locals {
  name = "mlflow"
  port = 5000
  manifest_vars = {
    name                        = local.name
    namespace                   = var.namespace
    image                       = var.image
    port                        = local.port
    replicas                    = var.replicas
    service_account             = var.service_account
    service_account_annotations = jsonencode(var.service_account_annotations)
    artifacts_destination       = var.artifacts_destination
    backend_secret              = kubernetes_secret.backend.metadata[0].name
  }
}

# The backend store URL holds the database password: a secret, mounted as a file (not an env var).
resource "kubernetes_secret" "backend" {
  metadata {
    name      = "mlflow-backend-store"
    namespace = var.namespace
  }

  data = {
    "backend-store-uri" = var.backend_store_uri
  }
}

resource "kubernetes_manifest" "service_account" {
  manifest = yamldecode(templatefile("${path.module}/manifests/serviceaccount.yaml.tpl", local.manifest_vars))
}

resource "kubernetes_manifest" "deployment" {
  manifest   = yamldecode(templatefile("${path.module}/manifests/deployment.yaml.tpl", local.manifest_vars))
  depends_on = [kubernetes_manifest.service_account]
}

resource "kubernetes_manifest" "service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/service.yaml.tpl", local.manifest_vars))
}
