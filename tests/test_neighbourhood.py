"""Fix-and-optimise by model: a sub-MIP's rows are the full rows with the fixed part moved to the bounds."""
import numpy as np

from solver.linear_model import LinearModel
from solver.neighbourhood import as_matrix, model_groups, restrict


def test_restrict_shifts_fixed_parts_into_bounds():
    names = ["n[a|o1|tp1]", "n[b|o1|tp1]", "x[a|o1|tp1@w0]", "use[t]"]
    model = LinearModel(names, [0.0] * 4, [5.0, 5.0, 1.0, 1.0], [True, True, False, True], [1.0, 2.0, 0.0, 0.0],
                        [("quota[0]", np.array([0, 1]), np.array([8.0, 4.0]), -np.inf, 20.0),
                         ("link[a]", np.array([2, 0]), np.array([1.0, -1.0]), -np.inf, 0.0),
                         ("only_b", np.array([1]), np.array([1.0]), 1.0, np.inf)])
    groups = model_groups(names)
    assert groups.tolist() == ["a", "b", "a", ""]
    values = np.array([1.0, 2.0, 1.0, 1.0])
    sub = restrict(model, as_matrix(model), groups == "a", values)
    assert sub.names == ["n[a|o1|tp1]", "x[a|o1|tp1@w0]"]
    rows = {r[0]: r for r in sub.rows}
    assert set(rows) == {"quota[0]", "link[a]"}  # only_b holds no free variable
    assert rows["quota[0]"][4] == 12.0  # 20 less the 4 GPUs x 2 VMs of the fixed model b
    assert rows["quota[0]"][1].tolist() == [0]
