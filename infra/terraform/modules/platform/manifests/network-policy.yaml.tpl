# stockml's own pods (MLflow, the forecast service, the Evidently UI) accept connections only from pods
# of their namespace (the Airflow workers, each other). To expose one through an Ingress, add a policy
# that admits the ingress controller's namespace on that service's port.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: stockml-same-namespace
  namespace: ${namespace}
  labels:
    app.kubernetes.io/part-of: stockml
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/part-of: stockml
  policyTypes:
    - Ingress
  ingress:
    - from:
        - podSelector: {}
