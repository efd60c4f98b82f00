# The Evidently UI on the monitoring workspace (one pod: the workspace is a folder of snapshots).
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
  replicas: 1
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
        - name: ui
          image: ${image}
          imagePullPolicy: Always
          command: ["evidently", "ui", "--workspace", "${workspace}", "--host", "0.0.0.0", "--port", "${port}"]
          ports:
            - name: http
              containerPort: ${port}
              protocol: TCP
          readinessProbe:
            tcpSocket:
              port: http
            periodSeconds: 10
          livenessProbe:
            tcpSocket:
              port: http
            initialDelaySeconds: 20
            periodSeconds: 20
            failureThreshold: 6
          resources:
            requests:
              cpu: 250m
              memory: 512Mi
            limits:
              cpu: "1"
              memory: 1Gi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            privileged: false
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: state
              mountPath: ${state_mount}
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: state
          persistentVolumeClaim:
            claimName: ${state_claim}
        - name: tmp
          emptyDir: {}
