//! Steps of the graph scenarios (`features/graph.feature`): CSV upload, reload, check,
//! validate, mutations and versions, through the HTTP routes only.
