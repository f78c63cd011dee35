// WhatsApp Archiver: one resource group holding everything the connector needs in Azure.
//
//   az group create -n <rg> -l <region>
//   az deployment group create -g <rg> -f infra/bicep/main.bicep -p namePrefix=... (see docs/deploy.md)
//
// The same deployment as infra/terraform (tests/test_infra.py keeps queues, containers, app settings,
// every role assignment, role and scope, and the Event Grid subscriptions of the blob triggers
// identical in both). Microsoft 365 permissions are not ARM resources: after this deployment run
// infra/scripts/grant-graph-roles.sh and infra/scripts/scope-exchange-rbac.ps1.
//
// Deploy into the cloud your Microsoft 365 tenant lives in (az cloud set --name AzureUSGovernment
// for GCC High and DoD) and set graphCloud to match: a managed identity only gets tokens from its
// own cloud's Entra ID.

targetScope = 'resourceGroup'

// --- Naming, region, cloud --------------------------------------------------------------------

@description('Short prefix for every resource name: lowercase letters and digits, 2 to 10 characters.')
@minLength(2)
@maxLength(10)
param namePrefix string

@description('Azure region; it must offer the Flex Consumption plan with Python 3.13.')
param location string = resourceGroup().location

@description('GRAPH_CLOUD: global (also GCC), usgov (GCC High), dod, china (21Vianet).')
@allowed([
  'global'
  'usgov'
  'dod'
  'china'
])
param graphCloud string = 'global'

@description('Storage redundancy. The account holds every record (claim checks) until it is archived.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_GRS'

@description('Upper bound of Flex Consumption instances (each queue function scales out to it).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of one Flex Consumption instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Days the Log Analytics workspace keeps the app logs.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

@description('Alerts go to this address.')
param alertEmail string

@description('Function failures in one hour above which the failure alert fires (queue retries fail on purpose).')
@minValue(0)
param functionFailureThreshold int = 5

// --- TeleMessage ------------------------------------------------------------------------------

@description('TELEMESSAGE_BASE_URL: the TeleMessage archive API of your account.')
param telemessageBaseUrl string

@description('TeleMessage account user name; stored in Key Vault, never in an app setting.')
@secure()
param telemessageUsername string

@description('TeleMessage account password; stored in Key Vault, never in an app setting.')
@secure()
param telemessagePassword string

@description('TELEMESSAGE_PAGE_SIZE: records per listing page (1-1000).')
@minValue(1)
@maxValue(1000)
param telemessagePageSize int = 200

// --- WhatsApp Business Platform (Cloud API) webhooks: optional -------------------------------
// Leave the three secrets empty for a deployment without this source: nothing is stored for them
// and their app settings are empty (the webhook then refuses every delivery with 503). Each one
// given is stored in Key Vault and set as a Key Vault reference.

@description('WHATSAPP_VERIFY_TOKEN: the Verify token typed into Meta\'s App Dashboard (the GET handshake); empty: the source is off.')
@secure()
param whatsappVerifyToken string = ''

@description('WHATSAPP_APP_SECRET: the Meta app secret the webhook bodies are signed with (two, comma-separated, while rotating); empty: the webhook refuses every delivery.')
@secure()
param whatsappAppSecret string = ''

@description('WHATSAPP_ACCESS_TOKEN: a Meta system-user access token, for media downloads; empty: none.')
@secure()
param whatsappAccessToken string = ''

@description('WHATSAPP_GRAPH_BASE_URL: Meta\'s Graph API (media downloads).')
param whatsappGraphBaseUrl string = 'https://graph.facebook.com'

@description('WHATSAPP_GRAPH_VERSION: the pinned Graph API version, v<major>.0 such as v26.0.')
param whatsappGraphVersion string = 'v26.0'

@description('WHATSAPP_PHONE_NUMBER_IDS: the firm\'s business numbers (Meta phone_number_id, comma-separated) whose API sends whatsapp_outbound takes; empty: it takes none.')
param whatsappPhoneNumberIds string = ''

@description('WhatsApp webhook deliveries refused for a missing or wrong signature in 15 minutes above which the signature alert fires.')
@minValue(0)
param webhookSignatureFailureThreshold int = 5

// --- Schedule and windows ---------------------------------------------------------------------

@description('ARCHIVE_SCHEDULE: NCRONTAB with 6 fields, in UTC. Daily at 02:00 UTC by default.')
param archiveSchedule string = '0 0 2 * * *'

@description('FIRST_RUN_LOOKBACK_HOURS: the first window when there is no watermark yet.')
@minValue(1)
@maxValue(744)
param firstRunLookbackHours int = 24

@description('SLICE_MINUTES: capture time per listing work item.')
@minValue(1)
@maxValue(1440)
param sliceMinutes int = 60

@description('MAX_WINDOW_DAYS: longest window one run hands off.')
@minValue(1)
@maxValue(31)
param maxWindowDays int = 31

@description('LISTING_OVERLAP_MINUTES: capture time re-listed before the watermark (repeats are skipped).')
@minValue(0)
@maxValue(1440)
param listingOverlapMinutes int = 0

@description('CAPTURE_SETTLE_MINUTES: windows end this long before now.')
@minValue(0)
@maxValue(1440)
param captureSettleMinutes int = 15

// --- Mapping ----------------------------------------------------------------------------------

@description('CUSTOM_MAPPING_ENABLED: the phone -> email CSV (python -m shared.cli mapping upload).')
param customMappingEnabled bool = true

@description('AUTO_MAPPING_ENABLED: the participant email property of a record.')
param autoMappingEnabled bool = true

@description('DIRECTORY_PHONE_MAPPING_ENABLED: the Entra ID user whose mobilePhone/businessPhones is the number.')
param directoryPhoneMappingEnabled bool = false

@description('DEFAULT_PHONE_REGION: region such as GB for numbers written without a country code; empty for none.')
param defaultPhoneRegion string = ''

@description('MAPPING_BLOB: the mapping CSV in the state container.')
param mappingBlob string = 'mapping/phone-to-email.csv'

@description('CATCH_ALL_MAILBOX: records no participant maps to go here instead of poison; empty for none.')
param catchAllMailbox string = ''

// --- Delivery ---------------------------------------------------------------------------------

@description('MAX_ITEM_MB: largest rendered item in MB (at most 150).')
@minValue(1)
@maxValue(150)
param maxItemMb int = 10

@description('ARCHIVE_FOLDER_NAME: the folder under the mailbox root.')
param archiveFolderName string = 'WhatsApp Archiver'

@description('ARCHIVE_ITEM_CLASS: item class of archived items; keep it derived from IPM.Note.')
param archiveItemClass string = 'IPM.Note.WhatsAppArchiver'

@description('GRAPH_UPLOAD_SESSIONS: attachments over 3 MB through upload sessions; false where the cloud lacks them.')
param graphUploadSessions bool = true

@description('GRAPH_CONVERSATION_PROPERTIES: group a chat into one Outlook conversation.')
param graphConversationProperties bool = true

@description('Client id of an app registration to use for Graph instead of the managed identity; empty: the managed identity.')
param graphAppClientId string = ''

@description('Name of a Key Vault certificate of that app registration (imported after deployment); empty: none.')
param graphCertificateName string = ''

// --- Daily transcripts and status -------------------------------------------------------------

@description('DAILY_TRANSCRIPTS: one item per chat, day and mailbox instead of one per record.')
param dailyTranscripts bool = false

@description('TRANSCRIPT_TIME_ZONE: IANA zone whose calendar days transcripts cover.')
param transcriptTimeZone string = 'UTC'

@description('TRANSCRIPT_DELAY_MINUTES: wait after a hand-off before composing the days that are over.')
@minValue(0)
@maxValue(1440)
param transcriptDelayMinutes int = 30

@description('CHAT_EXPORT_REPORT_DELAY_SECONDS: after a chat export is handed off, wait this long before its report is written again with the outcomes (then five times as long).')
@minValue(0)
@maxValue(3600)
param chatExportReportDelaySeconds int = 60

@description('TRANSCRIPT_MAX_WAIT_HOURS: compose anyway after this long.')
@minValue(1)
@maxValue(72)
param transcriptMaxWaitHours int = 6

@description('LEDGER_STORE: where the window ledger is kept, table (the ledger table below) or blob (append blobs in the state container, as earlier versions kept it; windows of at most about 800,000 outcomes).')
@allowed([
  'table'
  'blob'
])
param ledgerStore string = 'table'

@description('DELIVERY_STORE: where the delivery records (one per mailbox and record, held while the item is written) are kept, table (the delivery table below; two table transactions per archived pair) or blob (blobs under a lease in the state container, as earlier versions kept them).')
@allowed([
  'table'
  'blob'
])
param deliveryStore string = 'table'

@description('RECORD_STORE: where the claim checks (each record raw bytes, written once) are kept, table (the records table below; a table transaction per record, blobs written before still read) or blob (one blob per record in the records container, as earlier versions kept them).')
@allowed([
  'table'
  'blob'
])
param recordStore string = 'table'

@description('STATUS_RECENT_WINDOWS: windows shown by archive_status.')
@minValue(1)
@maxValue(366)
param statusRecentWindows int = 14

@description('REPORT_RETENTION_DAYS: days each window admin report (reports/<window id>.json and .csv in the state container) is kept; a lifecycle rule deletes older ones.')
@minValue(1)
@maxValue(3650)
param reportRetentionDays int = 90

// --- Chat exports (custodian collections) ----------------------------------------------------

@description('Create the Event Grid subscription that delivers uploads to the chat-exports container to the function chat_export_blob. Set false only for the very first deployment, before the code is published: the subscription is validated against the deployed function and needs its blobs_extension key (docs/deploy.md, section 11).')
param deployEventSubscriptions bool = true

// --- Evidence store (WORM, issue 18; docs/deploy.md, Evidence store) -------------------------

@description('EVIDENCE_RETENTION_DAYS: days the evidence container keeps every blob under its time-based retention policy (WORM), counted from creation (from the last append for an append blob); 2557 days is 7 years. While the policy is unlocked this parameter sets it; once the firm has locked it, it can only be extended, with the CLI (docs/deploy.md).')
@minValue(1)
@maxValue(146000)
param evidenceRetentionDays int = 2557

@description('A legal hold on the evidence container is requested: the container gets the metadata legal_hold_requested=true and the output evidenceLegalHoldCommand gives the command that places the hold. A legal hold is an action with case tags (setLegalHold), not a property a template can declare; it is placed and cleared by a person (docs/deploy.md).')
param evidenceLegalHold bool = false

@description('Set true once the firm has locked the evidence retention policy (docs/deploy.md): Azure then refuses every write to the policy but an extension, so this template leaves the policy as it is instead of failing on it. Never unlocks anything: a locked policy cannot be unlocked.')
param evidencePolicyLocked bool = false

// --- Vendor EML drop zone (SFTP, issue 21; docs/deploy.md, Vendor EML drop zone) --------------

@description('Create the vendor EML drop zone: a storage account of its own with SFTP (hierarchical namespace), the container eml-drops, the vendor\'s SFTP local user and the Event Grid subscription that hands each upload to the function eml_drop_blob. Off by default: Azure bills SFTP by the hour while it is enabled on an account, used or not (about $0.30 an hour, some $220 a month, at US list prices; docs/deploy.md).')
param emlDropZone bool = false

@description('The capture vendor\'s SSH public key for the SFTP local user, OpenSSH form (ssh-rsa of 2048 bits or more, ecdsa-sha2-nistp256 or ecdsa-sha2-nistp384; Azure SFTP takes no ed25519 key); while rotating, the new and the old, comma-separated (at most 10). A public key, not a secret. Empty: the zone has no login (output emlDropSftpUser empty).')
param emlDropSshPublicKey string = ''

@description('User name of the vendor\'s SFTP local user: 3 to 64 lowercase letters and digits (Azure local user names; the characters are checked by Azure). The vendor logs in as <account>.<user>.')
@minLength(3)
@maxLength(64)
param emlDropUserName string = 'emlvendor'

@description('EML_PHONE_PATTERN: where the vendor writes phone numbers in EML addresses, a regular expression; empty: a run of 7 to 15 digits, with an optional +, in the local part or the display name.')
param emlPhonePattern string = ''

@description('EML_DROP_REPORT_DELAY_SECONDS: after a drop is handed off, wait this long before its report is written again with the EMLs\' outcomes (then five times as long).')
@minValue(0)
@maxValue(3600)
param emlDropReportDelaySeconds int = 60

// --- Names ------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id)
var storageAccountName = take(toLower('${namePrefix}st${suffix}'), 24)
var keyVaultName = take(toLower('${namePrefix}kv${suffix}'), 24)
// The vendor EML drop zone's own account (SFTP needs a hierarchical namespace): 'dz', within the
// 24 characters of a storage account name like the others.
var emlDropStorageAccountName = take(toLower('${namePrefix}dz${suffix}'), 24)
var functionAppName = '${namePrefix}-func-${suffix}'
// The Functions host ID, set explicitly (AzureFunctionsWebHost__hostid below): the Event Grid blob
// trigger passes every event through the host queue azure-webjobs-blobtrigger-<host id> (Blobs
// extension, BlobTriggerQueueWriter), and that queue must have a known name so that its role can
// be scoped to it. On Flex Consumption the default host ID is an MD5 hash of the site name
// (azure-functions-host, ScriptHostIdProvider), which a template cannot compute. The app name is a
// valid host ID: lowercase letters, digits and single dashes, at most 29 characters (32 allowed),
// and the storage account is this app alone, so no other app can share it.
var functionHostId = toLower(functionAppName)

// Queue names are fixed in the code (shared/settings.py); the host creates a -poison queue on
// first use, they are created here so that the poison alert and `poison list` work from day one.
var queueNames = [
  'listing'
  'items'
  'transcripts'
  'listing-poison'
  'items-poison'
  'transcripts-poison'
  blobTriggerHostQueueName
  blobTriggerPoisonQueueName
]
// The Event Grid blob trigger (chat_export_blob) uses two queues of its own in AzureWebJobsStorage
// (Blobs extension 5.x): the webhook puts each BlobCreated event on the host queue
// azure-webjobs-blobtrigger-<host id>, which the host then reads to run the function, and a blob
// whose function fails five times goes to webjobs-blobtrigger-poison. The host creates both on
// first use; they are created here so that their roles can be scoped to them.
var blobTriggerHostQueueName = 'azure-webjobs-blobtrigger-${functionHostId}'
var blobTriggerPoisonQueueName = 'webjobs-blobtrigger-poison'
var deploymentContainerName = 'app-package'
var recordsContainerName = 'archive-records'
var stateContainerName = 'archive-state'
// Custodian collections: WhatsApp Export chat files (.zip or .txt) and their sidecars FILE.json,
// read by the Event Grid blob trigger chat_export_blob (path chat-exports/{name}), which writes
// FILE.report.json beside them. The container name is fixed in the code (the trigger path).
var chatExportsContainerName = 'chat-exports'
// The blob-triggered function, as the code registers it: the Event Grid subscription below
// delivers to it by this name (Host.Functions.<name>).
var chatExportsFunctionName = 'chat_export_blob'
// The evidence store (EVIDENCE_CONTAINER, default archive-evidence in shared/settings.py): the raw
// captured bytes, the chain's manifests and the final admin reports (raw/<kind>/<sha256>, block blobs created once),
// under a time-based retention policy. Not in containerNames: it has a policy, metadata and a role
// of its own (below, Evidence store).
var evidenceContainerName = 'archive-evidence'
// The Functions host's own containers in AzureWebJobsStorage: azure-webjobs-hosts (host and timer
// singleton leases, the timer's schedule monitor, the host id) and azure-webjobs-secrets (function
// and host keys). The host creates them if they are missing; they are created here so that its
// roles can be scoped to them (a role assignment needs its scope to exist).
var hostsContainerName = 'azure-webjobs-hosts'
var secretsContainerName = 'azure-webjobs-secrets'
var containerNames = [
  deploymentContainerName
  recordsContainerName
  stateContainerName
  hostsContainerName
  secretsContainerName
  chatExportsContainerName
]
// The window ledger (LEDGER_TABLE, default archiveledger in shared/settings.py). The code creates
// it on first use if it is missing; it is created here so that its role can be scoped to it.
var ledgerTableName = 'archiveledger'
// The delivery records (DELIVERY_TABLE, default archivedeliveries in shared/settings.py), the same way.
var deliveryTableName = 'archivedeliveries'
// The claim checks (RECORD_TABLE, default archiverecords in shared/settings.py), the same way.
var recordTableName = 'archiverecords'
var tableNames = [
  ledgerTableName
  deliveryTableName
  recordTableName
]

// Built-in role definitions (the same GUID in every Azure cloud).
var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// The identity's data role on each container, assigned on that container only (the same table as
// container_roles in infra/terraform/main.tf; tests/test_infra.py keeps them equal).
//   app-package      Contributor: the Flex Consumption platform writes and reads the deployment
//                    package with this identity (functionAppConfig.deployment.storage).
//   archive-records  Contributor: claim checks, written once and read back. The code never
//                    deletes here; Contributor still includes delete (no built-in role has write
//                    without delete), and blob soft delete (7 days) covers a deletion.
//   archive-state    Contributor: watermark (ETag), ledger (append blobs), mapping and its
//                    history, delivery records under blob leases, transcript staging (deleted once
//                    composed) and admin reports (purged after REPORT_RETENTION_DAYS).
//   azure-webjobs-*  Owner: the role the Functions documentation names for identity-based
//                    AzureWebJobsStorage ("Connecting to host storage with an identity": Storage
//                    Blob Data Owner covers the host's coordination blobs and its key store).
//   chat-exports     Contributor: the blob trigger reads each upload and its sidecar FILE.json
//                    (the host reads the blob, with this identity, through AzureWebJobsStorage),
//                    and the code writes FILE.report.json beside them. No account-level blob role
//                    exists to cover it: every blob role here is on its own container. The code
//                    never deletes here; Contributor still includes delete (no built-in role
//                    writes without it), and blob soft delete (7 days) covers a deletion.
//   archive-evidence not in this table: a custom role without any delete right (Evidence store,
//                    below), as no built-in blob role writes without delete.
// Owner is kept off the data containers: over Contributor it adds POSIX ACL and ownership changes,
// blob tags, permanent deletion of soft-deleted blobs and versions, and immutability-policy bypass,
// none of which the code uses and all of which weaken the evidence kept there. (The Functions docs
// suggest Owner for a blob trigger; in the watched container an Event Grid blob trigger only reads
// the blob and its properties, and its bookkeeping lives in the host containers and queues.)
var containerRoles = {
  'app-package': storageBlobDataContributor
  'archive-records': storageBlobDataContributor
  'archive-state': storageBlobDataContributor
  'azure-webjobs-hosts': storageBlobDataOwner
  'azure-webjobs-secrets': storageBlobDataOwner
  'chat-exports': storageBlobDataContributor
}

var useAppRegistration = !empty(graphAppClientId)

// The WhatsApp source is on when its app secret is given: without it the webhook refuses every
// delivery (503), so its alerts exist only then.
var whatsappEnabled = !empty(whatsappAppSecret)

// --- Identity ---------------------------------------------------------------------------------

// One user-assigned identity for everything: host storage, the code's storage clients, Key Vault
// references, keyless Application Insights and (through the scripts) Microsoft Graph.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-id'
  location: location
}

// --- Storage ----------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:No VNet in this deployment: the Flex app reaches storage over its public endpoint, authenticated by Entra ID only (shared keys off). Add VNet integration and private endpoints where policy requires (docs/deploy.md).
  // checkov:skip=CKV_AZURE_43:The name is computed, take('<namePrefix>st<uniqueString>', 24), lowercase letters and digits within 24 characters; checkov cannot evaluate the expression.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: without a VNet the app needs the public endpoint; every request needs an Entra ID token and an RBAC role.
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for name in containerNames: {
  parent: blobService
  name: name
  properties: {
    publicAccess: 'None'
  }
}]

// Admin reports: the app writes each window's report to reports/<window id>.json and .csv in the
// state container; this rule deletes them reportRetentionDays after their last write. It matches
// that prefix only: the ledger, the watermark and the mapping history in the same container are
// evidence, and no rule touches them. The app also purges reports older than REPORT_RETENTION_DAYS
// itself (so local runs on Azurite honour the setting too); this rule is the platform's guarantee.
// Deleted reports stay recoverable for the blob soft delete days above.
resource lifecyclePolicy 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'deleteOldReports'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${stateContainerName}/reports/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: reportRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for name in queueNames: {
  parent: queueService
  name: name
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for name in tableNames: {
  parent: tableService
  name: name
}]

// Storage roles: each container, queue and table gets the identity's role on itself only; nothing
// is granted on the storage account's data as a whole. Azure RBAC scopes blob data roles to a
// single container, queue data roles to a single queue and table data roles to a single table
// (Storage docs, "Authorize access to blobs/queues/tables using Microsoft Entra ID", Resource
// scope); a container, queue or table created later gets no access from these assignments.
resource containerRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in containerNames: {
  name: guid(containers[i].id, identity.id, containerRoles[name])
  scope: containers[i]
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', containerRoles[name])
  }
}]

// Storage Queue Data Contributor on each queue, the narrowest built-in role that covers what both
// sides do there: the triggers (listing, items, transcripts) receive, update and delete messages
// and the host creates and writes the -poison queues when retries run out (Functions docs: queue
// trigger Reader + Message Processor, output Contributor or Message Sender); the code sends with
// create-on-first-use (Create Queue is queues/write, which only Contributor among the queue data
// roles has), reads queue depth (queue metadata) and receives, replays and purges poison messages.
// The blob trigger queues the same way: the webhook creates the host queue if missing and sends
// each event to it, the host receives and deletes, and after five failures creates and writes
// webjobs-blobtrigger-poison (Functions docs, blob trigger: Storage Queue Data Contributor, for
// the poison queue). Contributor also permits deleting the queue itself, which nothing here does.
resource queueRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in queueNames: {
  name: guid(queues[i].id, identity.id, storageQueueDataContributor)
  scope: queues[i]
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
  }
}]

// Reader (control plane, read-only, no data access) on the storage account: the Functions host's
// storage health check lists the account's containers every 30 seconds (azure-functions-host,
// WebJobsStorageHealthCheck: GetBlobContainersAsync), and List Containers is an account-level
// operation (blobServices/containers/read) that no container-scoped role grants. Reader is the only
// built-in role that allows it without any blob or queue data action; it cannot read keys (listKeys
// is an action, not a read). Without it the host reports AzureWebJobsStorage unhealthy.
resource storageReaderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, reader)
  scope: storage
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
  }
}

// Storage Table Data Contributor on each table, the only built-in table data role that writes
// (Storage Table Data Reader only reads): the ledger creates its table on first use if it is
// missing (Create Table is tables/write), reads records, counters and windows by point reads and
// queries, and writes them with inserts, upserts and entity-group transactions that replace with an
// ETag (entities/add, update and write); the delivery records the same way, with inserts, point
// reads and merges that hold an ETag. Scoped to each table, not the account: the identity can read
// and write these tables only, and no other table in the account, present or future.
// Contributor also permits deleting entities and the table itself, which the code never does.
resource tableRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in tableNames: {
  name: guid(tables[i].id, identity.id, storageTableDataContributor)
  scope: tables[i]
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
  }
}]

// --- Evidence store (WORM, issue 18) ---------------------------------------------------------
//
// The raw captured bytes (TeleMessage records, webhook bodies, chat export files, media) as block
// blobs raw/<kind>/<sha256>, each created once and never overwritten; the manifests of the hash
// chain and the final admin reports are kept the same way (raw/manifest/..., raw/admin-report/...). One container under a container-level
// time-based retention policy (Storage docs, "Container-level WORM policies for immutable blob
// data" and "Store business-critical blob data with immutable storage"):
// - Container-level, not version-level, WORM: it needs no blob versioning (versioning stays off in
//   this account: the claim checks and the state container have no use for versions, and they would
//   be paid for) and it is the only kind that allows protected append writes (no write of the code
//   appends today: every piece, manifests included, is a block blob created once). It is compatible with what the account has (blob and container soft delete, which
//   Microsoft recommends beside it; no hierarchical namespace, which it would support anyway) and
//   incompatible only with what the account does not use: point-in-time restore, last access time
//   tracking, NFS 3.0 and SFTP (tests/test_infra.py keeps them off).
// - allowProtectedAppendWrites, not allowProtectedAppendWritesAll (they are mutually exclusive):
//   the former lets Append Block add to append blobs (left on for append-only evidence to come; nothing appends today); the latter also lets
//   new blocks be appended to existing block blobs (Data Lake append and flush), which the code never
//   does, so a raw blob stays exactly as it was committed. Creating a block blob (Put Blob, or Put
//   Block and Put Block List) is allowed under the policy; an overwrite, Set Blob Metadata or
//   Set Blob Properties and any delete are refused until the blob is older than the period.
// - Left unlocked: a locked policy can never be shortened or removed (only extended, at most five
//   times), and the container and the account can no longer be deleted while it holds blobs. Locking
//   is a deliberate act of the firm, with the CLI (docs/deploy.md), after which the firm deploys
//   with evidencePolicyLocked=true: Azure refuses every write to a locked policy but an extension
//   (REST, Blob Containers - Lock Immutability Policy), so the template then leaves it alone.
//   Microsoft: only a locked policy is compliant with SEC 17a-4(f); lock within about a day.
// Resource: Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies, name
// 'default' (ARM template reference, 2023-05-01: immutabilityPeriodSinceCreationInDays,
// allowProtectedAppendWrites, allowProtectedAppendWritesAll).
//
// Legal hold: the ARM container has no writable legal hold property; a hold is placed by the
// action setLegalHold (POST .../containers/<name>/setLegalHold, with 1 to 10 tags of 3 to 23
// alphanumerics, such as a matter id) and removed by clearLegalHold. A template cannot declare it
// (a deployment script would need an identity with that right and a CLI image). evidenceLegalHold
// marks the request on the container (metadata legal_hold_requested) and the output
// evidenceLegalHoldCommand gives the command; a person with the right runs it (docs/deploy.md).
resource evidenceContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: evidenceContainerName
  properties: {
    publicAccess: 'None'
    metadata: {
      legal_hold_requested: evidenceLegalHold ? 'true' : 'false'
    }
  }
}

resource evidencePolicy 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (!evidencePolicyLocked) {
  parent: evidenceContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: evidenceRetentionDays
    allowProtectedAppendWrites: true
    allowProtectedAppendWritesAll: false
  }
}

// The identity's role on the evidence container: no built-in blob data role writes without delete
// (Storage Blob Data Contributor has blobs/delete), so a custom role with only what the code does
// there (shared/adapters/evidence_blobs.py). Data actions (Storage docs, "Actions and attributes for
// Azure role assignment conditions for Azure Blob Storage"):
//   blobs/read        read a blob and its properties, list blobs (verify reads everything back)
//   blobs/write       write a blob: Put Blob, Put Block and Put Block List of a new blob (the
//                     policy refuses them on an existing one). It also covers Set Blob Metadata and
//                     Properties (the policy refuses them) and Set Blob Tier (allowed under WORM,
//                     never called by the code)
//   blobs/add/action  create a blob, or append data (Append Block: never called today)
// and one control-plane action, containers/write: the code creates its container on first use and
// takes the conflict as "it exists" (shared/adapters/azure_storage.py, ensured_container); Create
// Container is authorized by containers/write (as in Storage Blob Data Contributor), and without it
// the call is refused with 403 instead. containers/write is not containers/delete, and the policy
// and the legal hold have actions of their own (immutabilityPolicies/*, setLegalHold/action,
// clearLegalHold/action), none of which this role has.
// Not granted: blobs/delete, blobs/permanentDelete/action, blobs/deleteBlobVersion/action,
// blobs/move/action, blobs/tags/write, blobs/immutableStorage/runAsSuperUser/action (writes a blob
// legal hold or immutability policy), blobs/runAsSuperUser/action, containers/delete.
// Defined in this resource group (assignable here only) and assigned on the evidence container
// only; its name carries the prefix and the suffix because role names are unique in a tenant.
// Creating it needs Microsoft.Authorization/roleDefinitions/write (Owner or User Access
// Administrator; docs/deploy.md, Prerequisites). Subtracting Storage Blob Data Contributor with
// notDataActions would not do: a built-in role changes when Microsoft changes it.
var evidenceWriterActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/write'
]
var evidenceWriterDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'
]

resource evidenceWriterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'evidence-writer')
  properties: {
    roleName: 'WhatsApp Archiver evidence writer (${namePrefix}-${suffix})'
    description: 'Create and read blobs and append to append blobs in the WhatsApp Archiver evidence container; no delete.'
    type: 'customRole'
    permissions: [
      {
        actions: evidenceWriterActions
        notActions: []
        dataActions: evidenceWriterDataActions
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource evidenceRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(evidenceContainer.id, identity.id, evidenceWriterRole.id)
  scope: evidenceContainer
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', evidenceWriterRole.name)
  }
}

// --- Vendor EML drop zone (SFTP, issue 21; docs/deploy.md, Vendor EML drop zone) --------------
//
// Capture vendors (Capture Mobile / TeleMessage) deliver ZIPs of EMLs over SFTP. Azure Blob Storage
// speaks SFTP only on an account with a hierarchical namespace, and "local users" are its only
// SFTP identities (Storage docs, "SSH File Transfer Protocol (SFTP) support for Azure Blob
// Storage"). The main account cannot be that account: its evidence container is under container-
// level WORM, which SFTP excludes (Evidence store, above). Hence an account of its own, behind
// emlDropZone, with one container, eml-drops, which the vendor's local user has as its home.
//
// No WORM here (SFTP excludes it): the app copies every drop into the evidence container as it
// takes it (the code's part), and the vendor's user cannot delete (below).
//
// allowSharedKeyAccess false: an SFTP client authenticates as a local user with its SSH key, never
// with the account key ("Azure AD, shared access signature and account key authorization are not
// supported for the SFTP endpoint", SFTP known issues; a local user's sharedKey "is used for SMB
// authentication only", local user docs), and disallowing Shared Key rejects only requests signed
// with the account access keys ("Prevent Shared Key authorization"). So the SSH-key login does not
// need it, and the app reads here with its identity like everywhere else.
// Blob and container soft delete (7 days) are supported with a hierarchical namespace; blob
// versioning is not, so none.
resource emlDropStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = if (emlDropZone) {
  // checkov:skip=CKV_AZURE_35:The SFTP client of the vendor connects from the internet, and the Flex app (no VNet) reads drops over the public endpoint; a storage firewall would also refuse the app, which has no fixed outbound address (docs/deploy.md, Vendor EML drop zone).
  // checkov:skip=CKV_AZURE_43:The name is computed, take('<namePrefix>dz<uniqueString>', 24), lowercase letters and digits within 24 characters; checkov cannot evaluate the expression.
  // checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the SFTP endpoint is the public endpoint of the account; every SFTP login needs the SSH key of the vendor, every other request an Entra ID token and a role.
  // checkov:skip=CKV_AZURE_44:minimumTlsVersion is TLS1_2 (below); checkov reads no property of a conditional resource (= if (...)) and reports it missing.
  // checkov:skip=CKV_AZURE_206:The SKU is storageSku, the redundancy of the main account (Standard_GRS by default); checkov reads no property of a conditional resource (= if (...)).
  name: emlDropStorageAccountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    accessTier: 'Hot'
    isHnsEnabled: true
    isSftpEnabled: true
    isLocalUserEnabled: true
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource emlDropBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = if (emlDropZone) {
  parent: emlDropStorage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// The drop container (EML_DROPS_CONTAINER in shared/settings.py, the trigger's path eml-drops/{name}).
var emlDropsContainerName = 'eml-drops'
// The blob-triggered function, as the code registers it (Host.Functions.<name> in the webhook).
var emlDropsFunctionName = 'eml_drop_blob'

resource emlDropsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (emlDropZone) {
  parent: emlDropBlobService
  name: emlDropsContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The vendor's login: an SFTP local user (ARM Microsoft.Storage/storageAccounts/localUsers) with
// SSH public keys only (no password, no SMB shared key), whose home is eml-drops, with the
// container permissions r (read file content: the vendor reads the reports the app writes beside
// its ZIPs), w (upload file), l (list) and c (upload a file that does not exist), and no d: drops
// are evidence, and the vendor cannot delete one (SFTP docs, Container permissions). A local user
// bypasses Azure RBAC and ABAC entirely ("Local users do not interoperate with ... RBAC, ABAC and
// ACLs"), so these permissions are all it has. Up to 10 public keys per local user: the parameter
// takes the keys comma-separated, for rotation (docs/deploy.md). Created only with a key: Bicep has
// no assertion to fail a deployment with a message of ours (Azure/bicep#2405), so a zone deployed
// without a key has no login, and the output emlDropSftpUser says so by being empty.
var emlDropLogin = emlDropZone && !empty(emlDropSshPublicKey)

resource emlDropUser 'Microsoft.Storage/storageAccounts/localUsers@2023-05-01' = if (emlDropLogin) {
  parent: emlDropStorage
  name: emlDropUserName
  properties: {
    homeDirectory: emlDropsContainerName
    hasSshKey: true
    hasSshPassword: false
    hasSharedKey: false
    sshAuthorizedKeys: [for (key, i) in split(emlDropSshPublicKey, ','): {
      description: 'capture vendor key ${i + 1}'
      key: trim(key)
    }]
    permissionScopes: [
      {
        permissions: 'rwlc'
        service: 'blob'
        resourceName: emlDropsContainerName
      }
    ]
  }
  dependsOn: [
    emlDropsContainer
  ]
}

// The identity's role on eml-drops: it reads every drop and writes nothing but the status reports
// <drop>.report.json beside them. Enforced twice:
// - A custom role without any delete or move action: no built-in blob role writes without delete,
//   and Storage Blob Data Contributor also holds the action containers/delete, which a role
//   assignment condition cannot restrict (conditions apply to data actions only). Data actions
//   (Storage docs, "Actions and attributes for Azure role assignment conditions for Azure Blob
//   Storage"): blobs/read (read a drop and its properties, list), blobs/write and blobs/add/action
//   (write a report). No action at all: the container is the template's, and the code never
//   creates one here.
// - An Azure ABAC condition (version 2.0) on the assignment: writing (blobs/write) and creating
//   (blobs/add/action) are allowed only on a blob path ending .report.json, so neither a drop nor
//   its properties or metadata can be changed. The Blob path attribute is the path inside the
//   container, without the container name or a leading slash; it is not among the attributes the
//   same page marks unsupported with a hierarchical namespace (those are blob index tags and
//   snapshots), so it holds on this account. StringLike's * matches across '/', so a report in a
//   folder the vendor made is covered too.
// Assigned on the container only, like every blob role here; defined in this resource group and
// named with the prefix and suffix (role names are unique in a tenant).
var emlDropReporterDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'
]
var emlDropReportCondition = '''
(
 (
  !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'})
  AND
  !(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'})
 )
 OR
 (
  @Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path] StringLike '*.report.json'
 )
)
'''

resource emlDropReporterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (emlDropZone) {
  name: guid(resourceGroup().id, 'eml-drop-reporter')
  properties: {
    roleName: 'WhatsApp Archiver EML drop reader (${namePrefix}-${suffix})'
    description: 'Read the vendor EML drops and write their .report.json status files (with the assignment condition); no delete.'
    type: 'customRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: emlDropReporterDataActions
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource emlDropRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (emlDropZone) {
  name: guid(emlDropsContainer.id, identity.id, emlDropReporterRole.id)
  scope: emlDropsContainer
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', emlDropReporterRole.name)
    conditionVersion: '2.0'
    condition: emlDropReportCondition
  }
}

// The Functions host's part of the trigger eml_drop_blob (connection EmlDrops, Blobs extension 5.x,
// source EventGrid; azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.Storage.Blobs,
// BlobListenerFactory and BlobTriggerAttributeBindingProvider): the webhook queues each event on
// the host queue azure-webjobs-blobtrigger-<host id> of AzureWebJobsStorage (the queue writer is
// built on the host's queue client), the host reads the blob through the trigger's connection (the
// role above), and a blob that fails five times goes to webjobs-blobtrigger-poison in the queue
// service of the trigger's connection. An identity-based connection given as __blobServiceUri must
// also name that queue service, __queueServiceUri ("required for blob triggers", Functions docs,
// Blob storage connections). The templates point EmlDrops__queueServiceUri at the main account's
// queue service, whose webjobs-blobtrigger-poison (and its role) already exists for chat_export_blob:
// the drop account then needs no queue and the identity no queue role on it, and every blob trigger
// poison lands in the one queue `poison list` and the alert already watch. (Microsoft recommends the
// blob account's own queue service; it requires only that the identity may read and write messages
// in the one it is given.) No Reader on the drop account either: the host's storage health check
// lists the containers of AzureWebJobsStorage only.
//
// With the zone off, EmlDrops__blobServiceUri is the main account's blob endpoint: the code
// registers eml_drop_blob in every deployment, and the host builds the clients of a trigger's
// connection when it indexes the function, so the connection must resolve; without a subscription
// nothing ever delivers to it, and no eml-drops container exists in the main account.

resource emlDropBlobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (emlDropZone) {
  name: 'emlDropBlobLogs'
  scope: emlDropBlobService
  properties: {
    workspaceId: logs.id
    logs: storageLogs
  }
}

// --- Key Vault --------------------------------------------------------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:No VNet in this deployment: Key Vault references are resolved by the platform over the public endpoint with the app's identity and an RBAC role; restrict it with VNet integration and a private endpoint where policy requires.
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109.
  name: keyVaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource telemessageUsernameSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:TeleMessage account credentials have no expiry of their own; an expiry date here would only stop the connector. Rotate them at TeleMessage and update the secret.
  parent: vault
  name: 'telemessage-username'
  properties: {
    value: telemessageUsername
    contentType: 'text/plain'
  }
}

resource telemessagePasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:TeleMessage account credentials have no expiry of their own; an expiry date here would only stop the connector. Rotate them at TeleMessage and update the secret.
  parent: vault
  name: 'telemessage-password'
  properties: {
    value: telemessagePassword
    contentType: 'text/plain'
  }
}

// Key Vault Secrets User (read a secret's value; not Officer, which may also write and delete) on
// each secret the app settings reference, not on the vault: the identity cannot read any other
// secret or certificate that is or will be in this vault. Key Vault RBAC supports assignments on a
// single secret (Key Vault docs, "Provide access with Azure RBAC": secret scope role assignment).
resource telemessageUsernameRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(telemessageUsernameSecret.id, identity.id, keyVaultSecretsUser)
  scope: telemessageUsernameSecret
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource telemessagePasswordRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(telemessagePasswordSecret.id, identity.id, keyVaultSecretsUser)
  scope: telemessagePasswordSecret
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

// The WhatsApp Business Platform secrets (optional): each written, and granted, only when given, so
// a deployment without this source has none of them. Their app settings are empty otherwise.
resource whatsappVerifyTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(whatsappVerifyToken)) {
  // checkov:skip=CKV_AZURE_114:contentType is set (text/plain, below); checkov reads no property of a conditional resource (= if (...)) and reports it missing.
  // checkov:skip=CKV_AZURE_41:The verify token is a string chosen for Meta's handshake and has no expiry; an expiry date here would only stop the handshake. Change it in Meta's App Dashboard and here together.
  parent: vault
  name: 'whatsapp-verify-token'
  properties: {
    value: whatsappVerifyToken
    contentType: 'text/plain'
  }
}

resource whatsappAppSecretSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(whatsappAppSecret)) {
  // checkov:skip=CKV_AZURE_114:contentType is set (text/plain, below); checkov reads no property of a conditional resource (= if (...)) and reports it missing.
  // checkov:skip=CKV_AZURE_41:Meta app secrets have no expiry; an expiry date here would only make the webhook refuse every delivery. Rotate at Meta with both secrets comma-separated here (docs/deploy.md).
  parent: vault
  name: 'whatsapp-app-secret'
  properties: {
    value: whatsappAppSecret
    contentType: 'text/plain'
  }
}

resource whatsappAccessTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(whatsappAccessToken)) {
  // checkov:skip=CKV_AZURE_114:contentType is set (text/plain, below); checkov reads no property of a conditional resource (= if (...)) and reports it missing.
  // checkov:skip=CKV_AZURE_41:A Meta system-user token's expiry is chosen at Meta when the token is generated; a second date here could only disagree with it. Replace the secret before Meta's token expires.
  parent: vault
  name: 'whatsapp-access-token'
  properties: {
    value: whatsappAccessToken
    contentType: 'text/plain'
  }
}

resource whatsappVerifyTokenRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(whatsappVerifyToken)) {
  name: guid(whatsappVerifyTokenSecret.id, identity.id, keyVaultSecretsUser)
  scope: whatsappVerifyTokenSecret
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource whatsappAppSecretRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(whatsappAppSecret)) {
  name: guid(whatsappAppSecretSecret.id, identity.id, keyVaultSecretsUser)
  scope: whatsappAppSecretSecret
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource whatsappAccessTokenRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(whatsappAccessToken)) {
  name: guid(whatsappAccessTokenSecret.id, identity.id, keyVaultSecretsUser)
  scope: whatsappAccessTokenSecret
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

// The Graph certificate (only with graphCertificateName): its private key is read through the
// certificate's secret of the same name, so Key Vault Secrets User on that one secret. Import the
// certificate before deploying with its name (docs/deploy.md): the scope must exist. The name
// 'unused' never reaches Azure (the condition is false whenever it would be used).
resource graphCertificateSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = if (!empty(graphCertificateName)) {
  parent: vault
  name: empty(graphCertificateName) ? 'unused' : graphCertificateName
}

resource graphCertificateRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(graphCertificateName)) {
  name: guid(graphCertificateSecret.id, identity.id, keyVaultSecretsUser)
  scope: graphCertificateSecret
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

// --- Monitoring -------------------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-log'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${namePrefix}-appi'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
  }
}

// Monitoring Metrics Publisher on this component only (the narrowest scope: the component is the
// resource): keyless (Entra ID) telemetry ingestion, required once DisableLocalAuth is true.
resource metricsPublisherRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

// Every data request to a storage account's blobs and queues (reads, writes, deletes; SFTP included
// on the drop account) goes to the workspace.
var storageLogs = [for category in [
  'StorageRead'
  'StorageWrite'
  'StorageDelete'
]: {
  category: category
  enabled: true
}]

resource storageBlobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'storageBlobLogs'
  scope: blobService
  properties: {
    workspaceId: logs.id
    logs: storageLogs
  }
}

resource storageQueueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'storageQueueLogs'
  scope: queueService
  properties: {
    workspaceId: logs.id
    logs: storageLogs
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-alerts'
  location: 'Global'
  properties: {
    groupShortName: 'waarchiver'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Poison: Azure Storage queue metrics are per account (no per-queue dimension), so "items-poison
// is not empty" cannot be a metric alert. The alert reads the app's own logs instead: the
// connector logs every record it poisons ("... poisoned ...", "moved to poison") and the host
// logs "Moving message to queue '<name>-poison'" when retries run out. It fires on each new poison
// message; `python -m shared.cli poison list` shows what is there.
resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-poison'
  location: location
  properties: {
    displayName: 'WhatsApp Archiver: records poisoned'
    description: 'A record or task went to a -poison queue. Run python -m shared.cli poison list.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "poisoned" or message has "moved to poison" or (message has "MaxDequeueCount" and message has "-poison")'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// No reconciled window in 26 hours: the timer runs daily and logs "window <id> DOES NOT RECONCILE"
// (ERROR) at every run for a window still unreconciled 6 hours after its hand-off. The alert also
// fires when no timer run succeeded in 26 hours (the app is stopped, not deployed, or failing).
resource reconcileAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-not-reconciled'
  location: location
  properties: {
    displayName: 'WhatsApp Archiver: no reconciled window in 26 hours'
    description: 'A window does not reconcile, or the archive timer has not run successfully for 26 hours. Run python -m shared.cli status.'
    severity: 1
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    criteria: {
      allOf: [
        {
          query: 'let runs = toscalar(requests | where timestamp > ago(26h) and operation_Name =~ "schedule_archive_window" and success == true | count); let unreconciled = toscalar(traces | where timestamp > ago(26h) and severityLevel >= 3 and message has "DOES NOT RECONCILE" | count); print runs = runs, unreconciled = unreconciled | where runs == 0 or unreconciled > 0'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Failed invocations, as the Functions host records them. The connector's own spans are requests
// too (shared/telemetry.py: span kind consumer, failed when their invocation fails): left out, so
// that one failure counts once.
resource failureAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-function-failures'
  location: location
  properties: {
    displayName: 'WhatsApp Archiver: function failures'
    description: 'Function invocations failed (exceptions reach the host); transient ones are retried by the queue.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: 'requests | where success == false and name !in ("archive_record", "list_page", "compose_transcript")'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: functionFailureThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// WhatsApp Business Platform webhooks (only with whatsappAppSecret, the source on). Deliveries
// refused for a missing or wrong X-Hub-Signature-256 (counter archiver.webhook.deliveries by
// archiver.outcome): forged traffic, or the app secret changed at Meta but not here. Meta retries a
// refused delivery only for a limited time, so a rotation gone wrong loses messages unless fixed.
resource webhookSignatureAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = if (whatsappEnabled) {
  name: '${namePrefix}-webhook-signature'
  location: location
  properties: {
    displayName: 'WhatsApp Archiver: webhook signature failures'
    description: 'WhatsApp webhook deliveries were refused (401) for a missing or wrong signature: forged traffic, or the Meta app secret changed without WHATSAPP_APP_SECRET. Meta retries them only for a limited time.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == "archiver.webhook.deliveries" and tostring(customDimensions["archiver.outcome"]) in ("signature_missing", "signature_wrong") | project timestamp, refused = valueSum'
          metricMeasureColumn: 'refused'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: webhookSignatureFailureThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Sends the firm's application reported and the connector refused (400/403: a field, a number that
// is not the firm's; 503: no number configured). Each is a message the business sent that is not
// archived until the application posts it again, so one is enough to alert on.
resource outboundRefusedAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = if (whatsappEnabled) {
  name: '${namePrefix}-outbound-refused'
  location: location
  properties: {
    displayName: 'WhatsApp Archiver: outbound sends refused'
    description: 'whatsapp_outbound refused sends the sending application reported (a malformed post, a number not in WHATSAPP_PHONE_NUMBER_IDS, or none configured): those messages are not archived until it posts them again. See the warnings of whatsapp_outbound for the field at fault.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == "archiver.webhook.deliveries" and tostring(customDimensions["archiver.outcome"]) in ("outbound_refused", "outbound_not_configured") | project timestamp, refused = valueSum'
          metricMeasureColumn: 'refused'
          timeAggregation: 'Total'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// The webhook answered 5xx: a storage or queue failure before the body was safe (an exception, which
// the host answers with 500), or 503 while the app has no app secret to check signatures with. Meta
// keeps such a delivery and retries it, for 36 hours to 7 days by its own pages, then drops it:
// every one counts. The host records an HTTP function's status in resultCode but can mark the
// request successful whatever the status (azure-functions-host#6511), so the alert reads resultCode.
resource webhookServerErrorAlert 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = if (whatsappEnabled) {
  name: '${namePrefix}-webhook-5xx'
  location: location
  properties: {
    displayName: 'WhatsApp Archiver: webhook answered 5xx'
    description: 'The WhatsApp webhook answered Meta (or whatsapp_outbound answered the sending application of the firm) with a server error; Meta retries for a limited time, then drops the delivery. See the failed requests and their exceptions.'
    severity: 1
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'requests | where name in ("whatsapp_webhook", "whatsapp_outbound") and toint(resultCode) >= 500'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// --- Query pack and workbook -----------------------------------------------------------------

// The queries are infra/monitoring/queries/<name>.kql, one file each, with their display names in
// infra/monitoring/queries.json; Terraform loads the same files (monitoring.tf), so neither
// template holds a copy of a query. loadTextContent takes a literal path only: each file is named
// once here (tests/test_infra.py checks that every .kql file is).
var monitoringQueryInfo = loadJsonContent('../monitoring/queries.json')
var monitoringQueries = {
  'failures-by-reason': loadTextContent('../monitoring/queries/failures-by-reason.kql')
  'daily-volume': loadTextContent('../monitoring/queries/daily-volume.kql')
  'bytes-archived': loadTextContent('../monitoring/queries/bytes-archived.kql')
  'archive-latency': loadTextContent('../monitoring/queries/archive-latency.kql')
  'record-processing-time': loadTextContent('../monitoring/queries/record-processing-time.kql')
  'graph-throttling': loadTextContent('../monitoring/queries/graph-throttling.kql')
  'find-record': loadTextContent('../monitoring/queries/find-record.kql')
}

// Logs > Queries > Query packs: '<namePrefix>-queries'.
resource queryPack 'Microsoft.OperationalInsights/queryPacks@2019-09-01' = {
  name: '${namePrefix}-queries'
  location: location
  properties: {}
}

resource packQueries 'Microsoft.OperationalInsights/queryPacks/queries@2019-09-01' = [for query in items(monitoringQueryInfo): {
  parent: queryPack
  name: guid(queryPack.id, query.key)
  properties: {
    displayName: query.value.displayName
    description: query.value.description
    body: monitoringQueries[query.key]
    related: {
      categories: [
        'applications'
      ]
      resourceTypes: [
        'microsoft.insights/components'
      ]
    }
  }
}]

// The workbook is infra/monitoring/workbook.json with the query of each query item, a reference
// '{{queries/<name>.kql}}', replaced by that file's text (Terraform does the same), linked to the
// Application Insights component (Application Insights > Workbooks). Its name is a GUID derived
// from the resource group and prefix: every deployment updates the same workbook. any(): the items
// differ in shape (text, parameters, queries); only query items (type 3) are read for a query, and
// the conditional evaluates only the branch it takes.
var workbookTemplate = any(loadJsonContent('../monitoring/workbook.json'))
var workbookItems = [for item in workbookTemplate.items: (item.type != 3) ? item : union(item, {
  content: union(item.content, {
    query: monitoringQueries[replace(replace(item.content.query, '{{queries/', ''), '.kql}}', '')]
  })
})]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, namePrefix, 'workbook')
  location: location
  kind: 'shared'
  properties: {
    displayName: 'WhatsApp Archiver (${namePrefix})'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: string({
      version: workbookTemplate.version
      items: workbookItems
      fallbackResourceIds: [
        appInsights.id
      ]
    })
  }
}

// --- Function app -----------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy for Flex Consumption is offered in some regions only; the queues retry work on another instance, and storage redundancy is set by storageSku.
  name: '${namePrefix}-plan'
  location: location
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

var appSettings = {
  // Functions host: identity-based AzureWebJobsStorage (the code reads __accountName and __clientId
  // too). The service URIs carry the cloud's storage suffix, which accountName alone does not.
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  // The host ID, so that the blob trigger host queue has the name created above (see functionHostId).
  AzureFunctionsWebHost__hostid: functionHostId
  // Keyless Application Insights.
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.properties.clientId}'
  // The connector (shared/settings.py).
  ARCHIVE_SCHEDULE: archiveSchedule
  FIRST_RUN_LOOKBACK_HOURS: string(firstRunLookbackHours)
  SLICE_MINUTES: string(sliceMinutes)
  MAX_WINDOW_DAYS: string(maxWindowDays)
  LISTING_OVERLAP_MINUTES: string(listingOverlapMinutes)
  CAPTURE_SETTLE_MINUTES: string(captureSettleMinutes)
  TELEMESSAGE_BASE_URL: telemessageBaseUrl
  TELEMESSAGE_USERNAME: '@Microsoft.KeyVault(SecretUri=${telemessageUsernameSecret.properties.secretUri})'
  TELEMESSAGE_PASSWORD: '@Microsoft.KeyVault(SecretUri=${telemessagePasswordSecret.properties.secretUri})'
  TELEMESSAGE_PAGE_SIZE: string(telemessagePageSize)
  RECORDS_CONTAINER: recordsContainerName
  STATE_CONTAINER: stateContainerName
  LEDGER_STORE: ledgerStore
  LEDGER_TABLE: ledgerTableName
  DELIVERY_STORE: deliveryStore
  DELIVERY_TABLE: deliveryTableName
  RECORD_STORE: recordStore
  RECORD_TABLE: recordTableName
  CUSTOM_MAPPING_ENABLED: customMappingEnabled ? 'true' : 'false'
  AUTO_MAPPING_ENABLED: autoMappingEnabled ? 'true' : 'false'
  DIRECTORY_PHONE_MAPPING_ENABLED: directoryPhoneMappingEnabled ? 'true' : 'false'
  DEFAULT_PHONE_REGION: defaultPhoneRegion
  MAPPING_BLOB: mappingBlob
  CATCH_ALL_MAILBOX: catchAllMailbox
  MAX_ITEM_MB: string(maxItemMb)
  ARCHIVE_FOLDER_NAME: archiveFolderName
  ARCHIVE_ITEM_CLASS: archiveItemClass
  DAILY_TRANSCRIPTS: dailyTranscripts ? 'true' : 'false'
  TRANSCRIPT_TIME_ZONE: transcriptTimeZone
  TRANSCRIPT_DELAY_MINUTES: string(transcriptDelayMinutes)
  TRANSCRIPT_MAX_WAIT_HOURS: string(transcriptMaxWaitHours)
  CHAT_EXPORT_REPORT_DELAY_SECONDS: string(chatExportReportDelaySeconds)
  GRAPH_CLOUD: graphCloud
  GRAPH_UPLOAD_SESSIONS: graphUploadSessions ? 'true' : 'false'
  GRAPH_CONVERSATION_PROPERTIES: graphConversationProperties ? 'true' : 'false'
  // WhatsApp Business Platform webhooks (optional): a Key Vault reference for each secret given,
  // else empty, never a reference to a secret that was not written. A reference that does not
  // resolve leaves its own text as the value, which the app would take for a secret. ARM evaluates
  // only the branch the condition takes, so the secret that was not written is never read.
  WHATSAPP_VERIFY_TOKEN: empty(whatsappVerifyToken) ? '' : '@Microsoft.KeyVault(SecretUri=${whatsappVerifyTokenSecret!.properties.secretUri})'
  WHATSAPP_APP_SECRET: empty(whatsappAppSecret) ? '' : '@Microsoft.KeyVault(SecretUri=${whatsappAppSecretSecret!.properties.secretUri})'
  WHATSAPP_ACCESS_TOKEN: empty(whatsappAccessToken) ? '' : '@Microsoft.KeyVault(SecretUri=${whatsappAccessTokenSecret!.properties.secretUri})'
  WHATSAPP_GRAPH_BASE_URL: whatsappGraphBaseUrl
  WHATSAPP_GRAPH_VERSION: whatsappGraphVersion
  WHATSAPP_PHONE_NUMBER_IDS: whatsappPhoneNumberIds
  // Graph credential: the managed identity (AZURE_CLIENT_ID), or an app registration with a
  // certificate from Key Vault. The code refuses both at once, so one side is always empty.
  AZURE_CLIENT_ID: useAppRegistration ? '' : identity.properties.clientId
  GRAPH_TENANT_ID: useAppRegistration ? subscription().tenantId : ''
  GRAPH_CLIENT_ID: graphAppClientId
  GRAPH_CERTIFICATE: empty(graphCertificateName) ? '' : '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${graphCertificateName}/)'
  STATUS_RECENT_WINDOWS: string(statusRecentWindows)
  REPORT_RETENTION_DAYS: string(reportRetentionDays)
  // The evidence store (Evidence store, above): its container and the period of its policy.
  EVIDENCE_CONTAINER: evidenceContainerName
  EVIDENCE_RETENTION_DAYS: string(evidenceRetentionDays)
  // The vendor EML drops: the identity-based connection EmlDrops of eml_drop_blob, read by the code
  // too, with the identity (__credential, __clientId); its poison queue in the main account; with
  // the zone off, the main account, so that the host can still index the trigger (it builds the
  // clients of the connection), which no subscription then fires (drop zone section, above).
  EmlDrops__credential: 'managedidentity'
  EmlDrops__clientId: identity.properties.clientId
  EmlDrops__blobServiceUri: emlDropZone ? emlDropStorage!.properties.primaryEndpoints.blob : storage.properties.primaryEndpoints.blob
  EmlDrops__queueServiceUri: storage.properties.primaryEndpoints.queue
  EML_PHONE_PATTERN: emlPhonePattern
  EML_DROP_REPORT_DELAY_SECONDS: string(emlDropReportDelaySeconds)
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Client certificates do not apply: archive_status, archive_report and whatsapp_outbound take a function key, and whatsapp_webhook (anonymous, as Meta sends no key) takes only bodies bearing Meta's HMAC signature; the other functions are timer and queue triggers.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero by design; the daily timer and the queue triggers need no always-on instance, and queue work retries on any instance.
  // checkov:skip=CKV_AZURE_213:No health check: archive_status and archive_report need a function key, which a platform health probe does not send, and the WhatsApp webhook answers only Meta's handshake and signed bodies; the alerts watch the app instead.
  // checkov:skip=CKV_AZURE_222:No VNet in this deployment: Meta must reach the WhatsApp webhook from the internet (its addresses change too often for an allow-list), and archive_status needs a reachable endpoint (function key); restrict the rest with access restrictions or a private endpoint where policy requires.
  name: functionAppName
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identity.id
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
      ftpsState: 'Disabled'
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
  }
  dependsOn: [
    containers
    queues
    tables
    evidenceContainer
    evidencePolicy
    containerRoleAssignments
    queueRoleAssignments
    tableRoleAssignments
    evidenceRoleAssignment
    emlDropsContainer
    emlDropRoleAssignment
    storageReaderRole
    telemessageUsernameRole
    telemessagePasswordRole
    whatsappVerifyTokenRole
    whatsappAppSecretRole
    whatsappAccessTokenRole
    graphCertificateRole
    metricsPublisherRole
  ]
}

// Publishing with Entra ID only (az functionapp deployment ... uses a token): no basic-auth
// publishing credentials for FTP or SCM.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// --- Chat exports: Event Grid delivers uploads to the blob trigger -----------------------------
//
// Flex Consumption runs blob triggers only with the Event Grid source (no container polling): the
// storage account publishes BlobCreated to a system topic, and a subscription on it posts each
// event to the Blobs extension webhook of the function app, which queues it for chat_export_blob.
// Functions docs, "Tutorial: Trigger Azure Functions on blob containers using an event
// subscription" (functions-event-grid-blob-trigger): endpoint
// https://<app host>/runtime/webhooks/blobs?functionName=Host.Functions.<function>&code=<key>,
// the key being the system key blobs_extension (App keys > System keys), Event Grid Schema.

// The storage account system topic: an Azure resource has at most one, which every subscription
// to the account events shares. In the account region.
resource storageEvents 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: '${namePrefix}-storage-events'
  location: location
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// The webhook endpoint with the host blobs_extension system key (listKeys on host/default). The
// key exists, and the endpoint answers the subscription validation handshake, only once the code
// with chat_export_blob runs in the app: hence deployEventSubscriptions, false for the very first
// deployment. ARM evaluates only the branch the condition takes, so listKeys is not called then.
var chatExportsWebhookUrl = deployEventSubscriptions ? 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${chatExportsFunctionName}&code=${listKeys('${functionApp.id}/host/default', '2024-04-01').systemKeys.blobs_extension}' : ''

// BlobCreated in chat-exports only, each upload of FILE or FILE.json. The reports the function
// writes there (FILE.report.json) are left out, so that a report never triggers the function.
// Event Grid retries a failed delivery for 24 hours (30 attempts) and then drops it: an upload
// without a report beside it is uploaded again (an import skips what is already archived).
resource chatExportsSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = if (deployEventSubscriptions) {
  parent: storageEvents
  name: 'chat-exports-to-function'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: chatExportsWebhookUrl
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${chatExportsContainerName}/'
      advancedFilters: [
        {
          operatorType: 'StringNotEndsWith'
          key: 'subject'
          values: [
            '.report.json'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
  dependsOn: [
    containers
    containerRoleAssignments
    queueRoleAssignments
  ]
}

// --- Vendor EML drops: Event Grid delivers each completed upload to the blob trigger ------------
//
// The same as the chat exports above, on the drop account: its own system topic (an Azure resource
// has at most one), and a subscription delivering BlobCreated in eml-drops, reports left out, to
// the Blobs extension webhook of eml_drop_blob with the blobs_extension key; only with the zone and
// with deployEventSubscriptions (the webhook must exist to answer the validation handshake).
//
// Complete uploads only (Event Grid docs, "Azure Blob Storage as an Event Grid source"): an SFTP
// put raises BlobCreated twice, SftpCreate when the file is opened (an empty blob) and SftpCommit
// when it is closed with its contents; on a hierarchical-namespace account a Data Lake upload
// raises CreateFile, then FlushWithClose once the data is committed ("filter the event for the
// FlushWithClose REST API call"); a Blob REST upload (an operator's az storage blob upload) raises
// PutBlob or PutBlockList once the blob is committed; CopyBlob on such an account is raised when
// the copy starts, not when it ends. The advanced filter on data.api keeps the four values that
// mean "the file is whole": an event for a file not yet written is never delivered. An SFTP rename
// raises BlobRenamed (SftpRename), not BlobCreated, which is why the vendor uploads under the final
// name (docs/deploy.md).
var emlDropCompleteUploadApis = [
  'SftpCommit'
  'FlushWithClose'
  'PutBlob'
  'PutBlockList'
]

resource emlDropEvents 'Microsoft.EventGrid/systemTopics@2025-02-15' = if (emlDropZone) {
  name: '${namePrefix}-eml-drop-events'
  location: location
  properties: {
    source: emlDropStorage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

var emlDropsWebhookUrl = (emlDropZone && deployEventSubscriptions) ? 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${emlDropsFunctionName}&code=${listKeys('${functionApp.id}/host/default', '2024-04-01').systemKeys.blobs_extension}' : ''

resource emlDropsSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = if (emlDropZone && deployEventSubscriptions) {
  parent: emlDropEvents
  name: 'eml-drops-to-function'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: emlDropsWebhookUrl
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${emlDropsContainerName}/'
      advancedFilters: [
        {
          operatorType: 'StringNotEndsWith'
          key: 'subject'
          values: [
            '.report.json'
          ]
        }
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: emlDropCompleteUploadApis
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
  dependsOn: [
    emlDropsContainer
    emlDropRoleAssignment
    queueRoleAssignments
  ]
}

// --- Outputs ----------------------------------------------------------------------------------

output functionAppName string = functionApp.name
// The Callback URL to enter in Meta's App Dashboard (WhatsApp > Configuration) for the WhatsApp
// Business Platform source: the function whatsapp_webhook, route whatsapp/webhook.
output whatsappWebhookUrl string = 'https://${functionApp.properties.defaultHostName}/api/whatsapp/webhook'
// Where the firm's sending application reports each message it sends through the Cloud API (the
// function whatsapp_outbound, route whatsapp/outbound; append ?code=<function key>).
output whatsappOutboundUrl string = 'https://${functionApp.properties.defaultHostName}/api/whatsapp/outbound'
output storageAccountName string = storage.name
// Where custodians upload WhatsApp chat exports and their sidecars (docs/deploy.md, section 11).
output chatExportsContainer string = chatExportsContainerName
// The evidence store (docs/deploy.md, Evidence store), and with evidenceLegalHold the command that
// places the legal hold, for a person with the right to run it: replace <matterid> by the hold tag
// (3 to 23 letters and digits). --allow-protected-append-writes-all keeps append blobs appendable
// under the hold (a legal hold offers only that append setting); the code creates block blobs only.
output evidenceContainer string = evidenceContainer.name
output evidenceLegalHoldCommand string = evidenceLegalHold ? 'az storage container legal-hold set --resource-group ${resourceGroup().name} --account-name ${storage.name} --container-name ${evidenceContainerName} --tags <matterid> --allow-protected-append-writes-all true' : ''
// The vendor EML drop zone (docs/deploy.md, Vendor EML drop zone), empty while it is off: the SFTP
// host (the drop account's blob endpoint host), the login (<account>.<user>; empty without a key)
// and the container the vendor's home is.
output emlDropSftpHost string = emlDropZone ? replace(replace(emlDropStorage!.properties.primaryEndpoints.blob, 'https://', ''), '/', '') : ''
output emlDropSftpUser string = emlDropLogin ? '${emlDropStorageAccountName}.${emlDropUserName}' : ''
output emlDropsContainer string = emlDropZone ? emlDropsContainerName : ''
output keyVaultName string = vault.name
output appInsightsName string = appInsights.name
output identityName string = identity.name
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
