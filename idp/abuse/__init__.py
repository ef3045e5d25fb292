"""Defence against scripted abuse: per-client rate limits, the join gate (proof of work or a captcha),
what refused traffic gets, and the refusal figures operators watch."""
