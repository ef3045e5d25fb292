"""Events (waiting rooms): settings, lifecycle, the pre-queue lottery and automatic admission."""
