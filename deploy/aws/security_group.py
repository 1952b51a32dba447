"""The cluster's security group, made once before the first `ray up`, with SSH open to the
addresses you name and nothing else from outside:

    python deploy/aws/security_group.py --ssh-cidr 203.0.113.7/32    # your address(es), CIDR

Ray's cluster launcher, left to itself, makes the group with SSH open to 0.0.0.0/0 (its
`_create_default_ssh_inbound_rules`), and cluster.yaml cannot narrow that: extra rules only add.
But it leaves alone a group of the name cluster.yaml gives (`provider.security_group.GroupName`)
that already has rules, and puts every node in it. This makes that group, in the default VPC of
cluster.yaml's region: SSH (22/tcp) from --ssh-cidr, all traffic between the cluster's own nodes.
Your AWS credentials from the environment (boto3, the `s3` extra). To change the CIDR later,
edit the group's SSH rule (`aws ec2 authorize-security-group-ingress` / `revoke-...`).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path
from typing import Any

import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


def cluster_settings(path: Path = CLUSTER_YAML) -> tuple[str, str]:
    """(region, security group name) as cluster.yaml has them."""
    provider = yaml.safe_load(path.read_text())["provider"]
    return provider["region"], provider["security_group"]["GroupName"]


def ssh_cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{value}: not a CIDR ({e})") from e
    if net.prefixlen == 0:
        raise argparse.ArgumentTypeError(
            f"{value} is every address: name yours (e.g. 203.0.113.7/32)"
        )
    return str(net)


def make_group(ec2: Any, group: str, cidr: str) -> str:
    """The group in the default VPC with exactly the two rules; its id. An existing group of the
    name is refused, not changed: its rules are someone's."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise SystemExit("no default VPC in the region: make the group by hand (docs/cluster.md)")
    vpc = vpcs[0]["VpcId"]
    existing = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [group]}, {"Name": "vpc-id", "Values": [vpc]}]
    )["SecurityGroups"]
    if existing:
        raise SystemExit(f"{group} exists in {vpc} ({existing[0]['GroupId']}): left as it is")
    sg = ec2.create_security_group(
        GroupName=group,
        Description="study Ray cluster: SSH from one CIDR, all traffic between its nodes",
        VpcId=vpc,
    )["GroupId"]
    ssh = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": cidr}]}
    if ipaddress.ip_network(cidr).version == 6:
        ssh = {**ssh, "IpRanges": [], "Ipv6Ranges": [{"CidrIpv6": cidr}]}
    within = {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": sg}]}
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[ssh, within])
    return sg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ssh-cidr", required=True, type=ssh_cidr, help="who may SSH to the nodes")
    a = p.parse_args(argv)
    import boto3

    region, group = cluster_settings()
    sg = make_group(boto3.client("ec2", region_name=region), group, a.ssh_cidr)
    print(f"{group} ({sg}) in {region}: SSH from {a.ssh_cidr}, all traffic between its members")
    return 0


if __name__ == "__main__":
    sys.exit(main())
