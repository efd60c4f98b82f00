# Values of the kubeflow spark-operator chart, rendered by templatefile (modules/spark/main.tf).
spark:
  jobNamespaces:
    - "${job_namespace}"
  serviceAccount:
    create: true
    name: "${service_account}"
controller:
  replicas: 1
  resources:
    requests:
      cpu: 100m
      memory: 256Mi
    limits:
      cpu: "1"
      memory: 512Mi
webhook:
  enable: true
  replicas: 1
