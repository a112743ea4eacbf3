"""edgecloud.cli: the `edgecloud` command, a thin layer over the client SDK (edgecloud.client).

    main.py      the root group, global options, command registration, the one error handler
    context.py   CliState on ctx.obj and @pass_client: how a command gets its Client
    output.py    emit(): JSON or rich tables; json_option
    hosts.py networks.py flavors.py images.py vnfs.py alarms.py   one module per resource
    site.py daemons.py   `edgecloud up` and the controller/agent daemons

Each command module exposes register(cli) and imports only edgecloud.client,
edgecloud.errors and the modules above (never main.py).
"""
