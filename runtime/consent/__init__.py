"""The customer's side of consent: signed links to their preferences."""
