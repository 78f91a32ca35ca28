package app

import (
	"net/http"
	"sort"

	"github.com/labstack/echo/v4"

	apierrors "github.com/gatekit/gatekit/errors"
)

// behaviour is how a demo model answers.
type behaviour int

const (
	// echoes answers with the last user message.
	echoes behaviour = iota
	// flaky streams the role and two words, then fails with model_timeout.
	flaky
	// slow answers as echoes does, one word every slowWord.
	slow
)

// model is one entry of the demo's model list.
type model struct {
	ID        string    `json:"id"`
	Object    string    `json:"object"`
	Created   int64     `json:"created"`
	OwnedBy   string    `json:"owned_by"`
	behaviour behaviour `json:"-"`
}

// models are the demo's models, by id.
var models = map[string]model{
	"gk-echo":  {ID: "gk-echo", Object: "model", Created: 1767225600, OwnedBy: "gatekit", behaviour: echoes},
	"gk-flaky": {ID: "gk-flaky", Object: "model", Created: 1767225600, OwnedBy: "gatekit", behaviour: flaky},
	"gk-large": {ID: "gk-large", Object: "model", Created: 1767225600, OwnedBy: "gatekit", behaviour: echoes},
	"gk-slow":  {ID: "gk-slow", Object: "model", Created: 1767225600, OwnedBy: "gatekit", behaviour: slow},
}

// lookupModel returns the model named id, or 404 unknown_model.
func lookupModel(id string) (model, error) {
	m, ok := models[id]
	if !ok {
		return model{}, apierrors.UnknownModel(id)
	}
	return m, nil
}

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

func listModels(c echo.Context) error {
	list := modelList{Object: "list", Data: make([]model, 0, len(models))}
	for _, m := range models {
		list.Data = append(list.Data, m)
	}
	sort.Slice(list.Data, func(i, j int) bool { return list.Data[i].ID < list.Data[j].ID })
	return c.JSON(http.StatusOK, list)
}

func getModel(c echo.Context) error {
	m, ok := models[c.Param("model")]
	if !ok {
		return apierrors.NotFound("The model '" + apierrors.Clip(c.Param("model")) + "' does not exist.")
	}
	return c.JSON(http.StatusOK, m)
}
