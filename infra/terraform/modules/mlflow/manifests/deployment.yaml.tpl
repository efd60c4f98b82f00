# The MLflow tracking server. The backend store URL is read from the mounted secret file at start.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  namespace: ${namespace}
  labels:
    app.kubernetes.io/name: ${name}
    app.kubernetes.io/part-of: stockml
  annotations:
    checkov.io/skip1: CKV_K8S_43=Images are pinned to immutable version tags (the variables refuse latest; use ECR tag immutability); image@sha256 digests are accepted too but not required
spec:
  replicas: ${replicas}
  selector:
    matchLabels:
      app.kubernetes.io/name: ${name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ${name}
        app.kubernetes.io/part-of: stockml
    spec:
      serviceAccountName: ${service_account}
      # IRSA projects its own web-identity token; the Kubernetes API token is not needed.
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: mlflow
          image: ${image}
          imagePullPolicy: Always
          command: ["/bin/sh", "-c"]
          args:
            - >-
              exec mlflow server --host 0.0.0.0 --port ${port} --workers 2
              --backend-store-uri "$$(cat /etc/mlflow/backend-store-uri)"
              --serve-artifacts --artifacts-destination ${artifacts_destination}
          ports:
            - name: http
              containerPort: ${port}
              protocol: TCP
          readinessProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 10
            timeoutSeconds: 5
          livenessProbe:
            httpGet:
              path: /health
              port: http
            initialDelaySeconds: 30
            periodSeconds: 20
            timeoutSeconds: 5
            failureThreshold: 6
          resources:
            requests:
              cpu: 500m
              memory: 1Gi
            limits:
              cpu: "2"
              memory: 2Gi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            privileged: false
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: backend-store
              mountPath: /etc/mlflow
              readOnly: true
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: backend-store
          secret:
            secretName: ${backend_secret}
            defaultMode: 288 # 0440: readable by the fsGroup
        - name: tmp
          emptyDir: {}
