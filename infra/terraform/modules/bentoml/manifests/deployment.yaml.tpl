# The forecast service. Configuration is environment only (STOCKML_*, see serving/bentos/service.py);
# the API keys are a mounted file, re-read when it changes. No `replicas`: the autoscaler owns it.
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
    checkov.io/skip2: CKV_K8S_35=The service's settings read the Redis URL, which carries the auth token, only from STOCKML_SERVING__REDIS_URL; the API keys are a mounted file
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: ${name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ${name}
        app.kubernetes.io/part-of: stockml
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: service
          image: ${image}
          imagePullPolicy: Always
          ports:
            - name: http
              containerPort: ${port}
              protocol: TCP
          env:
            - name: STOCKML_MLFLOW_TRACKING_URI
              value: ${mlflow_tracking_uri}
            - name: STOCKML_AUTH__API_KEYS_FILE
              value: /etc/stockml/api_keys
            - name: STOCKML_HOME
              value: /var/lib/stockml
            - name: BENTOML_HOME
              value: /tmp/bentoml
            - name: STOCKML_SERVING__REDIS_URL
              valueFrom:
                secretKeyRef:
                  name: ${secret_name}
                  key: redis_url
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
          livenessProbe:
            httpGet:
              path: /livez
              port: http
            initialDelaySeconds: 20
            periodSeconds: 15
            timeoutSeconds: 3
            failureThreshold: 4
          resources:
            requests:
              cpu: ${cpu_request}
              memory: ${memory}
            limits:
              cpu: ${cpu_limit}
              memory: ${memory}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            privileged: false
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: api-keys
              mountPath: /etc/stockml
              readOnly: true
            - name: state
              mountPath: /var/lib/stockml
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: api-keys
          secret:
            secretName: ${secret_name}
            items:
              - key: api_keys
                path: api_keys
            defaultMode: 288 # 0440: readable by the fsGroup
        # the outcome store's SQLite file and the write-ahead log of served forecasts, per pod
        - name: state
          emptyDir: {}
        - name: tmp
          emptyDir: {}
