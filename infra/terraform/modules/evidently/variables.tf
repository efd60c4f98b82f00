variable "namespace" {
  type        = string
  description = "Namespace of the Evidently UI."
}

variable "image" {
  type        = string
  description = "Evidently UI image (repository:tag) with evidently 0.7.23."
}

variable "shared_state_claim" {
  type        = string
  description = "Claim of the shared STOCKML_HOME volume; the workspace is its evidently/ folder, where monitoring writes."
}
