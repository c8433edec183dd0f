"""boto3 clients are closed (their connection pools released) when the cache drops them."""

from loops import a2i


def test_reset_clients_closes_every_cached_client_and_its_connections(aws, flow_definition):
    a2i.describe_flow_definition(aws.region, flow_definition.name)
    list(a2i.iter_loop_pages(aws.region, flow_definition.arn))
    clients = list(a2i._clients.values())
    pools = [client._endpoint.http_session._manager for client in clients]
    assert len(clients) == 2 and all(len(pool.pools) > 0 for pool in pools)

    a2i.reset_clients()

    assert a2i._clients == {}
    assert all(len(pool.pools) == 0 for pool in pools)  # the open connections were closed


def test_close_clients_says_how_many_it_closed(aws, flow_definition):
    a2i.describe_flow_definition(aws.region, flow_definition.name)
    assert a2i.close_clients() == 1
    assert a2i.close_clients() == 0
