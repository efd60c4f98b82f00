# The Evidently UI (`evidently ui`, what `stockml dashboards` runs locally) on the workspace that the
# monitoring DAG writes into: STOCKML_HOME/evidently on the shared volume.

locals {
  name = "evidently-ui"
  port = 8000
  manifest_vars = {
    name        = local.name
    namespace   = var.namespace
    image       = var.image
    port        = local.port
    state_claim = var.shared_state_claim
    workspace   = "/var/lib/stockml/evidently"
    state_mount = "/var/lib/stockml"
  }
}

resource "kubernetes_manifest" "deployment" {
  manifest = yamldecode(templatefile("${path.module}/manifests/deployment.yaml.tpl", local.manifest_vars))
}

resource "kubernetes_manifest" "service" {
  manifest = yamldecode(templatefile("${path.module}/manifests/service.yaml.tpl", local.manifest_vars))
}
