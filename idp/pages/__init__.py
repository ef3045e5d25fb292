"""The waiting pages: what a waiting visitor sees, in their language, and how often it asks again."""
