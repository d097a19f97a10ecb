package dmf

// Wire types of hawkBit's DMF API (JSON bodies; the routing is in AMQP
// headers: type, thingId, tenant, topic).

// Message types (header "type").
const (
	TypeThingCreated = "THING_CREATED"
	TypeThingRemoved = "THING_REMOVED"
	TypeEvent        = "EVENT"
	TypePing         = "PING"
	TypePingResponse = "PING_RESPONSE"
	TypeThingDeleted = "THING_DELETED"
)

// Topics (header "topic") of EVENT messages.
const (
	TopicUpdateActionStatus = "UPDATE_ACTION_STATUS"
	TopicUpdateAttributes   = "UPDATE_ATTRIBUTES"
	TopicDownloadAndInstall = "DOWNLOAD_AND_INSTALL"
	TopicDownload           = "DOWNLOAD"
	TopicDownloadAndSkip    = "DOWNLOAD_AND_SKIP"
	TopicCancelDownload     = "CANCEL_DOWNLOAD"
	TopicMultiAction        = "MULTI_ACTION"
)

// ThingCreated is the optional body of THING_CREATED.
type ThingCreated struct {
	Name            string            `json:"name,omitempty"`
	AttributeUpdate *AttributeUpdate  `json:"attributeUpdate,omitempty"`
	Attributes      map[string]string `json:"attributes,omitempty"`
}

// AttributeUpdate is the body of UPDATE_ATTRIBUTES.
type AttributeUpdate struct {
	Attributes map[string]string `json:"attributes"`
	Mode       string            `json:"mode,omitempty"` // MERGE (default), REPLACE, REMOVE
}

// ActionStatus is the body of UPDATE_ACTION_STATUS.
type ActionStatus struct {
	ActionID         int64    `json:"actionId"`
	SoftwareModuleID int64    `json:"softwareModuleId,omitempty"`
	ActionStatus     string   `json:"actionStatus"`
	Message          []string `json:"message,omitempty"`
	Code             *int     `json:"code,omitempty"`
}

// DownloadRequest is the body of DOWNLOAD_AND_INSTALL, DOWNLOAD and
// DOWNLOAD_AND_SKIP.
type DownloadRequest struct {
	ActionID            int64            `json:"actionId"`
	TargetSecurityToken string           `json:"targetSecurityToken,omitempty"`
	SoftwareModules     []SoftwareModule `json:"softwareModules"`
}

// SoftwareModule is one module of a download request.
type SoftwareModule struct {
	ModuleID      int64      `json:"moduleId"`
	ModuleType    string     `json:"moduleType"`
	ModuleVersion string     `json:"moduleVersion"`
	Artifacts     []Artifact `json:"artifacts"`
	Metadata      []KeyValue `json:"metadata,omitempty"`
}

// Artifact is one file of a module.
type Artifact struct {
	Filename string            `json:"filename"`
	URLs     map[string]string `json:"urls"`
	Hashes   map[string]string `json:"hashes"`
	Size     int64             `json:"size"`
}

// KeyValue is module metadata.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// MultiActionElement is one element of a MULTI_ACTION body (a JSON list):
// the action's own topic and body, and its weight (higher first).
type MultiActionElement struct {
	Topic  string `json:"topic"`
	Action any    `json:"action"`
	Weight int    `json:"weight"`
}

// ActionID is the body of CANCEL_DOWNLOAD.
type ActionID struct {
	ActionID int64 `json:"actionId"`
}

// The statuses of UPDATE_ACTION_STATUS.
const (
	StatusDownload       = "DOWNLOAD"
	StatusRetrieved      = "RETRIEVED"
	StatusRunning        = "RUNNING"
	StatusDownloaded     = "DOWNLOADED"
	StatusFinished       = "FINISHED"
	StatusError          = "ERROR"
	StatusWarning        = "WARNING"
	StatusCanceled       = "CANCELED"
	StatusCancelRejected = "CANCEL_REJECTED"
)
