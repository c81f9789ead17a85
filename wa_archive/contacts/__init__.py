"""Contact profiles (who each person was, over time) and the consent log (what they agreed to)."""
