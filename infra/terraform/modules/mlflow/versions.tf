terraform {
  required_version = ">= 1.0.3"

  required_providers {
    kubernetes = {
      source = "hashicorp/kubernetes"
    }
  }
}
