# ---- Naming, region, cluster -----------------------------------------------------------------------

variable "name_prefix" {
  type        = string
  description = "Prefix of every cloud resource's name (lower-case letters, digits, dashes; 3-20 characters)."
  default     = "stockml"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "The name_prefix must be 3-20 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "aws_region" {
  type        = string
  description = "AWS region of the cluster, the databases, Redis and the artifact bucket (e.g. eu-west-1)."

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.aws_region))
    error_message = "The aws_region must look like eu-west-1."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every AWS resource (on top of project = stockml)."
  default     = {}
}

variable "eks_cluster_name" {
  type        = string
  description = "Name of the existing EKS cluster to deploy into (its IAM OIDC provider must exist, for IRSA)."

  validation {
    condition     = can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.eks_cluster_name))
    error_message = "The eks_cluster_name must be 1-100 letters, digits, dashes or underscores."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the cluster: the databases and Redis get security groups in it."

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "The vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Private subnets (two or more availability zones) for the Postgres instances and Redis."

  validation {
    condition     = length(var.private_subnet_ids) >= 2 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "Give at least two subnet ids (subnet-...), in different availability zones."
  }
}

variable "cluster_cidr_blocks" {
  type        = list(string)
  description = "CIDR blocks of the cluster's nodes and pods: the only sources allowed to reach Postgres and Redis."

  validation {
    condition     = length(var.cluster_cidr_blocks) > 0 && alltrue([for c in var.cluster_cidr_blocks : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "Every entry must be a valid CIDR block (not 0.0.0.0/0)."
  }
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of every stockml component (created)."
  default     = "stockml"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace)) && var.namespace != "default"
    error_message = "The namespace must be a DNS label (lower-case, digits, dashes) and not \"default\"."
  }
}

variable "shared_storage_class" {
  type        = string
  description = "A ReadWriteMany storage class (EFS CSI on EKS) for STOCKML_HOME shared by the workers and the Evidently UI."
  default     = "efs-sc"
}

variable "shared_storage_size_gb" {
  type        = number
  description = "Size of the shared STOCKML_HOME volume in GiB."
  default     = 50

  validation {
    condition     = var.shared_storage_size_gb >= 1 && var.shared_storage_size_gb <= 16384
    error_message = "The shared_storage_size_gb must be between 1 and 16384."
  }
}

# ---- The company's source database (an input, never a resource) -------------------------------------

variable "source_db_connection" {
  type        = string
  sensitive   = true
  description = "The existing source database as an Airflow connection (a postgresql:// or hiveserver2:// URI with the credentials URL-encoded, or the JSON form). Stored in a Kubernetes secret as AIRFLOW_CONN_STOCKML_SOURCE; pass it as TF_VAR_source_db_connection, never in a file."

  validation {
    condition     = can(regex("^(postgres(ql)?|hiveserver2|sqlite)://", var.source_db_connection)) || can(jsondecode(var.source_db_connection).conn_type)
    error_message = "The source_db_connection must be an Airflow connection URI (postgresql://, hiveserver2://) or its JSON form with conn_type."
  }
}

# ---- Managed Postgres (Airflow's and MLflow's metadata) and Redis ------------------------------------

variable "db_instance_class" {
  type        = string
  description = "RDS instance class of each metadata database (one for Airflow, one for MLflow)."
  default     = "db.t4g.medium"

  validation {
    condition     = can(regex("^db\\.[a-z0-9]+\\.[a-z0-9]+$", var.db_instance_class))
    error_message = "The db_instance_class must look like db.t4g.medium."
  }
}

variable "db_allocated_storage_gb" {
  type        = number
  description = "Allocated storage of each metadata database in GiB."
  default     = 20

  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 65536
    error_message = "RDS Postgres needs 20 to 65536 GiB."
  }
}

variable "db_engine_version" {
  type        = string
  description = "PostgreSQL major version of the metadata databases."
  default     = "16"

  validation {
    condition     = contains(["14", "15", "16", "17"], var.db_engine_version)
    error_message = "The db_engine_version must be one of 14, 15, 16, 17."
  }
}

variable "db_backup_retention_days" {
  type        = number
  description = "Days of automated backups kept for each metadata database."
  default     = 7

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "The db_backup_retention_days must be between 1 and 35."
  }
}

variable "redis_node_type" {
  type        = string
  description = "ElastiCache node type of the Redis that is the Celery broker and the service's shared cache."
  default     = "cache.t4g.small"

  validation {
    condition     = can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.redis_node_type))
    error_message = "The redis_node_type must look like cache.t4g.small."
  }
}

variable "redis_engine_version" {
  type        = string
  description = "Redis engine version of the ElastiCache replication group."
  default     = "7.1"

  validation {
    condition     = can(regex("^[67]\\.[0-9]+$", var.redis_engine_version))
    error_message = "The redis_engine_version must be 6.x or 7.x (e.g. 7.1)."
  }
}

# ---- Airflow (official chart, CeleryExecutor, KEDA-autoscaled workers) -------------------------------

variable "airflow_chart_version" {
  type        = string
  description = "Version of the official apache-airflow/airflow Helm chart."
  default     = "1.19.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.airflow_chart_version))
    error_message = "The airflow_chart_version must be an exact version such as 1.19.0."
  }
}

variable "airflow_image_repository" {
  type        = string
  description = "Repository of the Airflow image with the stockml package installed (apache/airflow:3.3.2 plus requirements.lock)."
}

variable "airflow_image_tag" {
  type        = string
  description = "Tag of the Airflow image (an immutable version, never latest)."

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", var.airflow_image_tag)) && var.airflow_image_tag != "latest"
    error_message = "The airflow_image_tag must be a valid tag other than latest."
  }
}

variable "dags_git_repo" {
  type        = string
  description = "Git repository git-sync pulls the DAGs and plugins from (this repository or a fork)."

  validation {
    condition     = can(regex("^(https://|ssh://|git@)", var.dags_git_repo))
    error_message = "The dags_git_repo must be an https://, ssh:// or git@ URL."
  }
}

variable "dags_git_branch" {
  type        = string
  description = "Branch git-sync follows."
  default     = "main"
}

variable "celery_queues" {
  type        = list(string)
  description = "Celery queues the workers consume, the DAGs' default queue first; must include training and maintenance, where stockml's DAGs send their heavy and housekeeping tasks."
  default     = ["default", "training", "maintenance"]

  validation {
    condition     = length(var.celery_queues) > 0 && alltrue([for q in var.celery_queues : can(regex("^[a-z][a-z0-9_-]*$", q))])
    error_message = "Give at least one queue; names are lower-case letters, digits, dashes or underscores."
  }

  validation {
    condition     = contains(var.celery_queues, "training") && contains(var.celery_queues, "maintenance")
    error_message = "The workers must consume the training and maintenance queues: stockml's DAGs send tasks there."
  }
}

variable "airflow_worker_concurrency" {
  type        = number
  description = "Task slots per Celery worker pod (training tasks use every core of their pod: keep it low)."
  default     = 2

  validation {
    condition     = var.airflow_worker_concurrency >= 1 && var.airflow_worker_concurrency <= 64
    error_message = "The airflow_worker_concurrency must be between 1 and 64."
  }
}

variable "airflow_worker_min_replicas" {
  type        = number
  description = "Fewest Celery worker pods KEDA keeps (0 scales to zero when no task is queued or running)."
  default     = 1

  validation {
    condition     = var.airflow_worker_min_replicas >= 0 && var.airflow_worker_min_replicas <= 100
    error_message = "The airflow_worker_min_replicas must be between 0 and 100."
  }
}

variable "airflow_worker_max_replicas" {
  type        = number
  description = "Most Celery worker pods KEDA scales out to."
  default     = 10

  validation {
    condition     = var.airflow_worker_max_replicas >= 1 && var.airflow_worker_max_replicas <= 100
    error_message = "The airflow_worker_max_replicas must be between 1 and 100."
  }
}

variable "keda_install" {
  type        = bool
  description = "Install KEDA (the worker autoscaler); false when the cluster already runs it."
  default     = true
}

variable "keda_chart_version" {
  type        = string
  description = "Version of the kedacore/keda Helm chart."
  default     = "2.16.1"
}

# ---- MLflow, BentoML, Evidently ----------------------------------------------------------------------

variable "mlflow_image" {
  type        = string
  description = "MLflow server image with mlflow 3.17.2, psycopg2 and boto3 (repository:tag, never latest)."

  validation {
    condition     = can(regex("^[^\\s]+:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", var.mlflow_image)) && !can(regex(":latest$", var.mlflow_image))
    error_message = "The mlflow_image must be repository:tag with a tag other than latest."
  }
}

variable "mlflow_replicas" {
  type        = number
  description = "MLflow tracking server pods."
  default     = 2

  validation {
    condition     = var.mlflow_replicas >= 1 && var.mlflow_replicas <= 10
    error_message = "The mlflow_replicas must be between 1 and 10."
  }
}

variable "bentoml_image" {
  type        = string
  description = "The forecast service image: `bentoml containerize stockml-forecaster:<version>` pushed to your registry (repository:tag, never latest)."

  validation {
    condition     = can(regex("^[^\\s]+:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", var.bentoml_image)) && !can(regex(":latest$", var.bentoml_image))
    error_message = "The bentoml_image must be repository:tag with a tag other than latest."
  }
}

variable "bentoml_min_replicas" {
  type        = number
  description = "Fewest forecast service pods the horizontal autoscaler keeps."
  default     = 2

  validation {
    condition     = var.bentoml_min_replicas >= 1 && var.bentoml_min_replicas <= 50
    error_message = "The bentoml_min_replicas must be between 1 and 50."
  }
}

variable "bentoml_max_replicas" {
  type        = number
  description = "Most forecast service pods the horizontal autoscaler scales out to."
  default     = 10

  validation {
    condition     = var.bentoml_max_replicas >= 1 && var.bentoml_max_replicas <= 100
    error_message = "The bentoml_max_replicas must be between 1 and 100."
  }
}

variable "bentoml_target_cpu_utilization_pct" {
  type        = number
  description = "Average CPU utilisation (per cent of the request) the autoscaler aims at."
  default     = 70

  validation {
    condition     = var.bentoml_target_cpu_utilization_pct >= 10 && var.bentoml_target_cpu_utilization_pct <= 95
    error_message = "The bentoml_target_cpu_utilization_pct must be between 10 and 95."
  }
}

variable "bentoml_cpu_request" {
  type        = string
  description = "CPU request of one forecast service pod (Kubernetes quantity, e.g. 1 or 500m); the limit is twice it."
  default     = "1"

  validation {
    condition     = can(regex("^[0-9]+(m)?$", var.bentoml_cpu_request))
    error_message = "The bentoml_cpu_request must be a CPU quantity such as 1, 2 or 500m."
  }
}

variable "bentoml_memory_limit" {
  type        = string
  description = "Memory request and limit of one forecast service pod (Kubernetes quantity, e.g. 2Gi)."
  default     = "2Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.bentoml_memory_limit))
    error_message = "The bentoml_memory_limit must be a quantity in Mi or Gi, such as 2Gi."
  }
}

variable "evidently_image" {
  type        = string
  description = "Evidently UI image with evidently 0.7.23 (repository:tag, never latest)."

  validation {
    condition     = can(regex("^[^\\s]+:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", var.evidently_image)) && !can(regex(":latest$", var.evidently_image))
    error_message = "The evidently_image must be repository:tag with a tag other than latest."
  }
}

# ---- Spark (optional) ------------------------------------------------------------------------------

variable "spark_enabled" {
  type        = bool
  description = "Install the Spark-on-Kubernetes operator for the Spark path (off by default)."
  default     = false
}

variable "spark_operator_chart_version" {
  type        = string
  description = "Version of the kubeflow spark-operator Helm chart (used only with spark_enabled)."
  default     = "2.1.1"
}
