provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge(var.tags, { project = "stockml" })
  }
}

# Both Kubernetes providers talk to the cluster the cloud module points at (an existing EKS cluster).
provider "kubernetes" {
  host                   = module.cloud.cluster_endpoint
  cluster_ca_certificate = base64decode(module.cloud.cluster_ca_certificate)
  token                  = module.cloud.cluster_token
}

provider "helm" {
  kubernetes {
    host                   = module.cloud.cluster_endpoint
    cluster_ca_certificate = base64decode(module.cloud.cluster_ca_certificate)
    token                  = module.cloud.cluster_token
  }
}
