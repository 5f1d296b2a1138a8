"""Payment providers' own webhooks: verification, mapping to observations, the payment state."""
