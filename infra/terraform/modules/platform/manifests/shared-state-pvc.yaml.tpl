# STOCKML_HOME on a ReadWriteMany volume: every Celery worker and the Evidently UI mount it.
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: ${name}
  namespace: ${namespace}
  labels:
    app.kubernetes.io/name: stockml-home
    app.kubernetes.io/part-of: stockml
spec:
  accessModes:
    - ReadWriteMany
  storageClassName: ${storage_class}
  resources:
    requests:
      storage: ${size_gb}Gi
