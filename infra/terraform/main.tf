# stockml on Kubernetes. Cloud-specific resources (the cluster's credentials, managed Postgres, managed
# Redis, the artifact bucket, the secrets manager, IAM) live only in modules/cloud_aws; every other
# module is plain Kubernetes/Helm and takes what it needs from the cloud module's outputs. Another cloud
# is another cloud_<name> module with the same outputs (see README "Deployment (Terraform)").

module "cloud" {
  source = "./modules/cloud_aws"

  name_prefix              = var.name_prefix
  eks_cluster_name         = var.eks_cluster_name
  vpc_id                   = var.vpc_id
  private_subnet_ids       = var.private_subnet_ids
  cluster_cidr_blocks      = var.cluster_cidr_blocks
  namespace                = var.namespace
  mlflow_service_account   = local.mlflow_service_account
  db_instance_class        = var.db_instance_class
  db_allocated_storage_gb  = var.db_allocated_storage_gb
  db_engine_version        = var.db_engine_version
  db_backup_retention_days = var.db_backup_retention_days
  redis_node_type          = var.redis_node_type
  redis_engine_version     = var.redis_engine_version
}

locals {
  mlflow_service_account = "mlflow"
}

module "platform" {
  source = "./modules/platform"

  namespace              = var.namespace
  shared_storage_class   = var.shared_storage_class
  shared_storage_size_gb = var.shared_storage_size_gb
  source_db_connection   = var.source_db_connection
}

module "mlflow" {
  source = "./modules/mlflow"

  namespace                   = module.platform.namespace
  image                       = var.mlflow_image
  service_account             = local.mlflow_service_account
  service_account_annotations = module.cloud.mlflow_service_account_annotations
  backend_store_uri           = module.cloud.mlflow_db_connection
  artifacts_destination       = module.cloud.artifact_root
  replicas                    = var.mlflow_replicas
}

module "airflow" {
  source = "./modules/airflow"

  namespace           = module.platform.namespace
  chart_version       = var.airflow_chart_version
  image_repository    = var.airflow_image_repository
  image_tag           = var.airflow_image_tag
  metadata_connection = module.cloud.airflow_db_connection
  broker_url          = module.cloud.redis_url
  source_secret_name  = module.platform.source_secret_name
  mlflow_tracking_uri = module.mlflow.tracking_uri
  shared_state_claim  = module.platform.shared_state_claim
  dags_git_repo       = var.dags_git_repo
  dags_git_branch     = var.dags_git_branch
  celery_queues       = var.celery_queues
  worker_concurrency  = var.airflow_worker_concurrency
  worker_min_replicas = var.airflow_worker_min_replicas
  worker_max_replicas = var.airflow_worker_max_replicas
  keda_install        = var.keda_install
  keda_chart_version  = var.keda_chart_version
}

module "bentoml" {
  source = "./modules/bentoml"

  namespace                  = module.platform.namespace
  image                      = var.bentoml_image
  mlflow_tracking_uri        = module.mlflow.tracking_uri
  redis_url                  = module.cloud.redis_url
  min_replicas               = var.bentoml_min_replicas
  max_replicas               = var.bentoml_max_replicas
  target_cpu_utilization_pct = var.bentoml_target_cpu_utilization_pct
  cpu_request                = var.bentoml_cpu_request
  memory_limit               = var.bentoml_memory_limit
}

module "evidently" {
  source = "./modules/evidently"

  namespace          = module.platform.namespace
  image              = var.evidently_image
  shared_state_claim = module.platform.shared_state_claim
}

# The Spark path (a Spark-on-Kubernetes operator): off unless spark_enabled = true.
module "spark" {
  source = "./modules/spark"
  count  = var.spark_enabled ? 1 : 0

  namespace     = module.platform.namespace
  chart_version = var.spark_operator_chart_version
}
