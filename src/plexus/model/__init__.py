"""The southbound model: the typed logical objects agents compile from (``objects``),
the names shared with the server (``keys``), the indexed collection of them
(``catalog``) and the rules of what each chassis needs (``relevance``). Pure: no I/O,
and nothing here imports the API, the pipeline or the agent."""
