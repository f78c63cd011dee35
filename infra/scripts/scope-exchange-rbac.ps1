<#
.SYNOPSIS
    Scopes the connector's Mail.ReadWrite to the archived users' group with Exchange Online RBAC
    for Applications, then removes the tenant-wide Microsoft Graph Mail.ReadWrite grant.

.DESCRIPTION
    Permissions granted in Microsoft Entra ID and in Exchange Online RBAC for Applications add up:
    while the managed identity holds the Graph application role Mail.ReadWrite, it can write to
    every mailbox, whatever the Exchange scope says. This script therefore

      1. registers the identity in Exchange Online (New-ServicePrincipal),
      2. creates (or updates) a management scope for the members of the archived users' group
         (New-ManagementScope -RecipientRestrictionFilter "MemberOfGroup -eq '<group DN>'"),
      3. assigns the role "Application Mail.ReadWrite" to the identity within that scope
         (New-ManagementRoleAssignment -App ... -CustomResourceScope ...),
      4. optionally shows Test-ServicePrincipalAuthorization for one mailbox,
      5. removes the identity's tenant-wide Graph app role assignment Mail.ReadWrite
         (User.Read.All stays: the directory lookups are not an Exchange permission).

    Run it once after deployment (Terraform users: then set graph_mail_tenant_wide = false, or
    the next apply grants tenant-wide access again). Safe to run again.

    Notes
    - MemberOfGroup takes the group's distinguished name and does not expand nested groups: put the
      archived users in the group directly. Use a mail-enabled security group or a distribution
      group (the group must be visible to Exchange Online: Get-Group finds it).
    - Exchange caches application permissions: a change can take up to two hours to apply. Until
      then, a mailbox newly in or out of scope behaves as before; the connector defers writes
      refused with ErrorAccessDenied for 15 minutes at a time (docs/graph.md), it does not lose them.
    - Needs: PowerShell 7, modules ExchangeOnlineManagement (3.x) and Microsoft.Graph.Applications
      (Install-Module ExchangeOnlineManagement, Microsoft.Graph.Applications -Scope CurrentUser);
      an account in the Exchange "Organization Management" role group, and one that may remove app
      role assignments in Entra ID (Privileged Role Administrator or Global Administrator).

.PARAMETER IdentityClientId
    Client (application) id of the managed identity: deployment output identityClientId.

.PARAMETER IdentityObjectId
    Object id of the managed identity's service principal: deployment output identityPrincipalId.

.PARAMETER Group
    The group whose members' mailboxes are archived (name, alias, email address or DN).

.PARAMETER Cloud
    Global (also GCC), USGov (GCC High), USGovDoD, China. Picks the Exchange Online and Microsoft
    Graph environments together.

.PARAMETER TestMailbox
    A mailbox to check with Test-ServicePrincipalAuthorization after the assignment.

.PARAMETER KeepTenantWideGrant
    Leave the Graph Mail.ReadWrite grant in place (not recommended: the scope then limits nothing).

.EXAMPLE
    ./infra/scripts/scope-exchange-rbac.ps1 -IdentityClientId 1111... -IdentityObjectId 2222... `
        -Group whatsapp-archived@contoso.com -Cloud USGov -TestMailbox trader@contoso.com
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)] [guid] $IdentityClientId,
    [Parameter(Mandatory)] [guid] $IdentityObjectId,
    [Parameter(Mandatory)] [string] $Group,
    [ValidateSet('Global', 'USGov', 'USGovDoD', 'China')] [string] $Cloud = 'Global',
    [string] $DisplayName = 'WhatsApp Archiver',
    [string] $ScopeName = 'WhatsApp Archiver mailboxes',
    [string] $TestMailbox,
    [switch] $KeepTenantWideGrant
)

$ErrorActionPreference = 'Stop'
$exchangeEnvironment = @{ Global = 'O365Default'; USGov = 'O365USGovGCCHigh'; USGovDoD = 'O365USGovDoD'; China = 'O365China' }[$Cloud]
$graphEnvironment = @{ Global = 'Global'; USGov = 'USGov'; USGovDoD = 'USGovDoD'; China = 'China' }[$Cloud]
$role = 'Application Mail.ReadWrite'

Import-Module ExchangeOnlineManagement
Connect-ExchangeOnline -ExchangeEnvironmentName $exchangeEnvironment -ShowBanner:$false

# 1. The identity as an Exchange service principal (a pointer to the Entra ID object).
$servicePrincipal = Get-ServicePrincipal -Identity $IdentityClientId.ToString() -ErrorAction SilentlyContinue
if (-not $servicePrincipal) {
    if ($PSCmdlet.ShouldProcess($DisplayName, 'New-ServicePrincipal')) {
        $servicePrincipal = New-ServicePrincipal -AppId $IdentityClientId.ToString() `
            -ObjectId $IdentityObjectId.ToString() -DisplayName $DisplayName
    }
}
Write-Host "Exchange service principal: $($servicePrincipal.DisplayName) ($IdentityClientId)"

# 2. The scope: mailboxes of the group's direct members.
$groupObject = Get-Group -Identity $Group
$filter = "MemberOfGroup -eq '$($groupObject.DistinguishedName)'"
$scope = Get-ManagementScope -Identity $ScopeName -ErrorAction SilentlyContinue
if (-not $scope) {
    if ($PSCmdlet.ShouldProcess($ScopeName, 'New-ManagementScope')) {
        $scope = New-ManagementScope -Name $ScopeName -RecipientRestrictionFilter $filter
    }
} elseif ($scope.RecipientFilter -ne $filter) {
    if ($PSCmdlet.ShouldProcess($ScopeName, 'Set-ManagementScope')) {
        Set-ManagementScope -Identity $ScopeName -RecipientRestrictionFilter $filter
    }
}
Write-Host "Management scope '$ScopeName': $filter"

# 3. Mail.ReadWrite within the scope, and nowhere else in Exchange.
# Get-ManagementRoleAssignment has no -App filter: match the assignee on the client.
$names = @($servicePrincipal.Identity, $servicePrincipal.Name, $servicePrincipal.ObjectId, $servicePrincipal.AppId) |
    Where-Object { $_ } | ForEach-Object { "$_" }
$assignments = @(Get-ManagementRoleAssignment -Role $role -ErrorAction SilentlyContinue |
    Where-Object { "$($_.RoleAssigneeType)" -eq 'ServicePrincipal' -and "$($_.RoleAssigneeName)" -in $names })
foreach ($assignment in $assignments | Where-Object { $_.CustomResourceScope -ne $ScopeName }) {
    if ($PSCmdlet.ShouldProcess($assignment.Name, 'Remove-ManagementRoleAssignment (not in the scope)')) {
        Remove-ManagementRoleAssignment -Identity $assignment.Identity -Confirm:$false
    }
}
if (-not ($assignments | Where-Object { $_.CustomResourceScope -eq $ScopeName })) {
    if ($PSCmdlet.ShouldProcess("$role for $DisplayName", 'New-ManagementRoleAssignment')) {
        try {
            New-ManagementRoleAssignment -App $IdentityObjectId.ToString() -Role $role -CustomResourceScope $ScopeName | Out-Null
        } catch {
            # Re-runs: an identical assignment the lookup above did not recognise is fine.
            if ("$_" -notmatch 'already exists') { throw }
            Write-Host "The assignment exists already."
        }
    }
}
Write-Host "Role assignment: '$role' scoped to '$ScopeName'"

# 4. What Exchange says for one mailbox (InScope should be True for a member, False otherwise).
if ($TestMailbox) {
    Test-ServicePrincipalAuthorization -Identity $IdentityClientId.ToString() -Resource $TestMailbox |
        Format-Table RoleName, GrantedPermissions, AllowedResourceScope, InScope -AutoSize
}
Disconnect-ExchangeOnline -Confirm:$false

# 5. The tenant-wide grant in Entra ID goes, or the scope limits nothing.
if ($KeepTenantWideGrant) {
    Write-Warning 'The tenant-wide Graph Mail.ReadWrite grant stays: the identity can still write to every mailbox.'
    return
}
Import-Module Microsoft.Graph.Applications
Connect-MgGraph -Environment $graphEnvironment -Scopes 'AppRoleAssignment.ReadWrite.All', 'Application.Read.All' -NoWelcome
$graph = Get-MgServicePrincipal -Filter "appId eq '00000003-0000-0000-c000-000000000000'"
$mailReadWrite = $graph.AppRoles | Where-Object { $_.Value -eq 'Mail.ReadWrite' -and $_.AllowedMemberTypes -contains 'Application' }
$grants = Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $IdentityObjectId.ToString() -All |
    Where-Object { $_.ResourceId -eq $graph.Id -and $_.AppRoleId -eq $mailReadWrite.Id }
foreach ($grant in $grants) {
    if ($PSCmdlet.ShouldProcess('Graph Mail.ReadWrite (tenant-wide)', 'Remove-MgServicePrincipalAppRoleAssignment')) {
        Remove-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $IdentityObjectId.ToString() -AppRoleAssignmentId $grant.Id
        Write-Host 'Removed the tenant-wide Graph Mail.ReadWrite grant.'
    }
}
if (-not $grants) { Write-Host 'No tenant-wide Graph Mail.ReadWrite grant (already removed).' }
Disconnect-MgGraph | Out-Null
Write-Host 'Done. Exchange applies application permission changes within about two hours.'
