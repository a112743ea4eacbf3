"""Central: one orchestrator above many autonomous sites (distributed cloud, issue 13).

Each site's controller dials out to central over ONE mutually authenticated TLS connection
(central/site_gateway.py; the site's end is controller/central_link.py), so nothing at a site
listens towards the WAN. Central keeps its own store (central/models.py, own Alembic
migrations), serves its own REST API (central/api.py) and knows each site's release,
inventory, alarm counts and whether it is online (central/sites.py).
"""
