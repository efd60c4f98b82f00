# Airflow 3 from the official chart (apache-airflow/airflow): CeleryExecutor on the managed Redis,
# metadata on the managed Postgres, workers autoscaled by KEDA on the queued and running tasks, DAGs
# and plugins by git-sync. The chart's values are values.yaml.tpl in this folder; secrets reach the
# chart only as names of Kubernetes secrets, never as values.

locals {
  values_vars = {
    image_repository    = var.image_repository
    image_tag           = var.image_tag
    metadata_secret     = kubernetes_secret.metadata.metadata[0].name
    result_secret       = kubernetes_secret.result_backend.metadata[0].name
    broker_secret       = kubernetes_secret.broker.metadata[0].name
    keys_secret         = kubernetes_secret.keys.metadata[0].name
    source_secret       = var.source_secret_name
    mlflow_tracking_uri = var.mlflow_tracking_uri
    state_claim         = var.shared_state_claim
    git_repo            = var.dags_git_repo
    git_branch          = var.dags_git_branch
    queues              = join(",", var.celery_queues)
    default_queue       = var.celery_queues[0]
    worker_concurrency  = var.worker_concurrency
    worker_min          = var.worker_min_replicas
    worker_max          = max(var.worker_min_replicas, var.worker_max_replicas)
  }
}

# ---- Secrets the chart reads by name (keys as the chart expects them) --------------------------------

resource "random_id" "fernet_key" {
  byte_length = 32
}

resource "random_password" "api_secret_key" {
  length  = 48
  special = false
}

resource "random_password" "jwt_secret" {
  length  = 64
  special = false
}

resource "kubernetes_secret" "metadata" {
  metadata {
    name      = "airflow-metadata"
    namespace = var.namespace
  }

  # KEDA's Postgres scaler reads the worker's AIRFLOW_CONN_AIRFLOW_DB (from `connection`), or
  # `kedaConnection` in the chart's other set-ups: a libpq URL (postgresql://) in both.
  data = {
    connection     = var.metadata_connection
    kedaConnection = var.metadata_connection
  }
}

resource "kubernetes_secret" "result_backend" {
  metadata {
    name      = "airflow-result-backend"
    namespace = var.namespace
  }

  data = {
    connection = "db+${var.metadata_connection}"
  }
}

resource "kubernetes_secret" "broker" {
  metadata {
    name      = "airflow-broker"
    namespace = var.namespace
  }

  data = {
    connection = var.broker_url
  }
}

resource "kubernetes_secret" "keys" {
  metadata {
    name      = "airflow-keys"
    namespace = var.namespace
  }

  data = {
    # Fernet wants 32 url-safe base64 bytes with padding; random_id's b64_url drops the "=".
    "fernet-key"     = "${random_id.fernet_key.b64_url}="
    "api-secret-key" = random_password.api_secret_key.result
    "jwt-secret"     = random_password.jwt_secret.result
  }
}

# ---- KEDA (the worker autoscaler) and Airflow --------------------------------------------------------

resource "helm_release" "keda" {
  count = var.keda_install ? 1 : 0

  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = var.keda_chart_version
  namespace        = "keda"
  create_namespace = true
  atomic           = true
}

resource "helm_release" "airflow" {
  name       = "airflow"
  repository = "https://airflow.apache.org"
  chart      = "airflow"
  version    = var.chart_version
  namespace  = var.namespace
  timeout    = 900
  atomic     = true

  values = [templatefile("${path.module}/values.yaml.tpl", local.values_vars)]

  depends_on = [helm_release.keda]
}
