# The namespace, its network policy, the volume the pipeline's state lives on (STOCKML_HOME: run folders, the Evidently
# workspace), shared by every Celery worker and the Evidently UI, and the source connection's secret.

resource "kubernetes_namespace" "this" {
  metadata {
    name = var.namespace

    labels = {
      "app.kubernetes.io/part-of"          = "stockml"
      "pod-security.kubernetes.io/enforce" = "baseline"
    }
  }
}

locals {
  shared_state_claim = "stockml-home"
  shared_state_vars = {
    name          = local.shared_state_claim
    namespace     = kubernetes_namespace.this.metadata[0].name
    storage_class = var.shared_storage_class
    size_gb       = var.shared_storage_size_gb
  }
}

resource "kubernetes_manifest" "shared_state" {
  manifest = yamldecode(templatefile("${path.module}/manifests/shared-state-pvc.yaml.tpl", local.shared_state_vars))
}

resource "kubernetes_manifest" "network_policy" {
  manifest = yamldecode(templatefile("${path.module}/manifests/network-policy.yaml.tpl", local.shared_state_vars))
}

# The company's existing database: an input, stored only here (as Airflow reads connections from
# AIRFLOW_CONN_<ID> variables); no resource of this configuration creates or changes it.
resource "kubernetes_secret" "source" {
  metadata {
    name      = "stockml-source"
    namespace = kubernetes_namespace.this.metadata[0].name
  }

  data = {
    connection = var.source_db_connection
  }
}
