# Values of the official Airflow chart (apache-airflow/airflow) for stockml, rendered by Terraform's
# templatefile (modules/airflow/main.tf). The set-up mirrors infra/airflow/celery.env: CeleryExecutor,
# Postgres metadata, Redis broker, result backend on the metadata DB, queues default,training,maintenance.
airflowVersion: "3.3.2"
defaultAirflowRepository: "${image_repository}"
defaultAirflowTag: "${image_tag}"
images:
  airflow:
    repository: "${image_repository}"
    tag: "${image_tag}"
    pullPolicy: Always

executor: CeleryExecutor

# Managed services instead of the chart's own Postgres and Redis.
postgresql:
  enabled: false
redis:
  enabled: false
data:
  metadataSecretName: "${metadata_secret}"
  resultBackendSecretName: "${result_secret}"
  brokerUrlSecretName: "${broker_secret}"
fernetKeySecretName: "${keys_secret}"
apiSecretKeySecretName: "${keys_secret}"
jwtSecretName: "${keys_secret}"

# The company's source database (an Airflow connection, from its secret) and the pipeline's settings.
secret:
  - envName: AIRFLOW_CONN_STOCKML_SOURCE
    secretName: "${source_secret}"
    secretKey: connection
env:
  - name: STOCKML_MLFLOW_TRACKING_URI
    value: "${mlflow_tracking_uri}"
  - name: STOCKML_HOME
    value: /var/lib/stockml

config:
  core:
    dags_folder: /opt/airflow/dags/repo/dags
    plugins_folder: /opt/airflow/dags/repo/plugins
    load_examples: "False"
    dags_are_paused_at_creation: "True"
  celery:
    worker_concurrency: ${worker_concurrency}
  operators:
    default_queue: "${default_queue}"

# dags/ and plugins/ of the repository, pulled by git-sync into every component.
dags:
  persistence:
    enabled: false
  gitSync:
    enabled: true
    repo: "${git_repo}"
    branch: "${git_branch}"
    rev: HEAD
    depth: 1
    subPath: ""
    period: 60s

# Celery workers: autoscaled by KEDA on the queued and running task instances, every queue consumed
# (one worker Deployment: each pod takes the default, training and maintenance tasks, which the DAGs
# route with the STOCKML_AIRFLOW__* queue names, left at their defaults here), STOCKML_HOME on the
# shared ReadWriteMany volume (run folders, the Evidently workspace).
workers:
  replicas: ${worker_min}
  args: ["bash", "-c", "exec airflow celery worker --queues ${queues}"]
  keda:
    enabled: true
    minReplicaCount: ${worker_min}
    maxReplicaCount: ${worker_max}
    pollingInterval: 10
    cooldownPeriod: 300
    usePgbouncer: false
  persistence:
    enabled: true
    size: 20Gi
  resources:
    requests:
      cpu: "2"
      memory: 4Gi
    limits:
      cpu: "4"
      memory: 8Gi
  extraVolumes:
    - name: stockml-home
      persistentVolumeClaim:
        claimName: "${state_claim}"
  extraVolumeMounts:
    - name: stockml-home
      mountPath: /var/lib/stockml

pgbouncer:
  enabled: false
triggerer:
  enabled: true
