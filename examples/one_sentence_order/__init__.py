"""One sentence, one order: an agent that turns "order two large lattes to the office, oat milk,
pay with my default card" into a placed order, through oneplan, on any model.

* ``shop.py`` - the shop (SQLite): menu and options, stores and hours, addresses, payments, orders.
* ``tools.py`` - the shop as tools, with errors the model reads (sold out, store closed).
* ``agent.py`` - the loop on the openai or anthropic SDK; ``__main__.py`` - the command.
* ``script.py``, ``scripted.py``, ``orders.py`` - a tiny Qwen checkpoint that plays the order's tool
  calls, for running the example offline on oneplan's local engine.
"""
