"""`returnhub bench`: the hot path measured against the framework's own ceiling.

The server under test and a bare aiohttp endpoint run as separate processes and
are driven by the same load client (wrk when installed, else our asyncio client)
in interleaved rounds, so every figure is reported as a ratio from one sitting.
"""
