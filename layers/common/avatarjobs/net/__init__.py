"""Network helpers that need care: fetching URLs that callers chose (the SSRF guard)."""
