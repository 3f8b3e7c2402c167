"""Generation providers (fal's queue, Mirako) behind one interface, and the checks of their webhooks."""
