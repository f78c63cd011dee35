#!/usr/bin/env bash
# Grants the connector's managed identity its Microsoft Graph application roles (the Bicep path;
# Terraform does the same in infra/terraform/graph.tf):
#   User.Read.All   the directory check that a mapped address is a real mailbox, and phone mapping
#   Mail.ReadWrite  create the archive items (tenant-wide until scope-exchange-rbac.ps1 scopes it)
#
#   infra/scripts/grant-graph-roles.sh -g <resource group> -n <identity name> [--no-mail]
#
# --no-mail grants User.Read.All only: for a tenant that scopes Mail.ReadWrite with Exchange Online
# RBAC for Applications from the start (then run scope-exchange-rbac.ps1 before the first window).
#
# Needs the Azure CLI signed in (az login) to the tenant of the identity, in its cloud
# (az cloud set --name AzureUSGovernment for GCC High and DoD, AzureChinaCloud for 21Vianet), as a
# user who may grant application permissions: Privileged Role Administrator or Global Administrator.
# Safe to run again: roles already granted are left as they are.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
resource_group="" identity="" roles=(User.Read.All Mail.ReadWrite)
while [ $# -gt 0 ]; do
  case $1 in
    -g|--resource-group) resource_group=${2:-}; shift 2 ;;
    -n|--identity-name) identity=${2:-}; shift 2 ;;
    --no-mail) roles=(User.Read.All); shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[ -n "$resource_group" ] && [ -n "$identity" ] || usage

# Microsoft Graph's app id is the same in every cloud; its endpoint is not.
graph_app_id=00000003-0000-0000-c000-000000000000
graph=$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)
graph=${graph%/}

principal_id=$(az identity show -g "$resource_group" -n "$identity" --query principalId -o tsv)
graph_sp_id=$(az rest --method get --url "$graph/v1.0/servicePrincipals(appId='$graph_app_id')" --query id -o tsv)
echo "identity $identity: service principal $principal_id; Microsoft Graph ($graph): $graph_sp_id"

for role in "${roles[@]}"; do
  role_id=$(az rest --method get --url "$graph/v1.0/servicePrincipals/$graph_sp_id" \
    --query "appRoles[?value=='$role' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)
  [ -n "$role_id" ] || { echo "Microsoft Graph has no application role $role" >&2; exit 1; }
  granted=$(az rest --method get --url "$graph/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
    --query "length(value[?appRoleId=='$role_id' && resourceId=='$graph_sp_id'])" -o tsv)
  if [ "$granted" != "0" ]; then
    echo "$role: already granted"
    continue
  fi
  az rest --method post --url "$graph/v1.0/servicePrincipals/$principal_id/appRoleAssignments" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\": \"$principal_id\", \"resourceId\": \"$graph_sp_id\", \"appRoleId\": \"$role_id\"}" \
    --output none
  echo "$role: granted"
done
echo "A token the identity already holds keeps its old roles until it expires (managed identity tokens are cached for up to 24 hours)."
