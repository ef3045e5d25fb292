"""The worker process: periodic jobs of every event, the lease that lets one worker act, tick bookkeeping."""
