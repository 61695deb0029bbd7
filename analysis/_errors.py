"""The one error the analysis package raises on purpose."""


class AnalysisError(ValueError):
    """An experiment cannot be analysed: it does not exist, has no search, or its search has no trials.

    Also raised when a table or figure needs data the search did not record (a FLOP budget, two
    trials, a varied parameter). ``tunelab report`` maps it to exit status 2.
    """
