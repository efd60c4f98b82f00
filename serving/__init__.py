"""Online serving of the stockml router (BentoML)."""
